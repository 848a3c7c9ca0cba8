// Traceway web UI: keyboard navigation, the span tree, lazy span details,
// bulk selection and auto-refresh. Pages work without it; this only adds speed.
"use strict";

(function () {
  const typing = (el) =>
    el && (el.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(el.tagName));

  // "/" focuses the page's search box (or the trace id box in the header).
  document.addEventListener("keydown", (event) => {
    if (event.key !== "/" || event.ctrlKey || event.metaKey || event.altKey) return;
    if (typing(document.activeElement)) return;
    const box = document.getElementById("filter") || document.getElementById("jump");
    if (!box) return;
    event.preventDefault();
    box.focus();
    box.select();
  });

  document.querySelectorAll("select[data-autosubmit]").forEach((select) => {
    select.addEventListener("change", () => select.form.requestSubmit());
  });

  document.querySelectorAll("[data-confirm]").forEach((button) => {
    button.addEventListener("click", (event) => {
      if (!window.confirm(button.dataset.confirm)) event.preventDefault();
    });
  });

  // --- tables whose rows open a page -------------------------------------------

  function rowsOf(table) {
    return Array.from(table.querySelectorAll("tbody tr[data-href]"));
  }

  document.querySelectorAll("table[data-nav-table]").forEach((table) => {
    table.addEventListener("click", (event) => {
      const row = event.target.closest("tr[data-href]");
      if (!row || event.target.closest("a, input, button, label")) return;
      if (event.target.closest("td.check")) {
        const box = row.querySelector("input[type=checkbox]");
        if (box) box.click();
        return;
      }
      window.location.href = row.dataset.href;
    });
    table.addEventListener("keydown", (event) => {
      const row = event.target.closest("tr[data-href]");
      if (!row || typing(event.target)) return;
      const rows = rowsOf(table);
      const index = rows.indexOf(row);
      let next = null;
      if (event.key === "j" || event.key === "ArrowDown") next = rows[index + 1];
      else if (event.key === "k" || event.key === "ArrowUp") next = rows[index - 1];
      else if (event.key === "Enter") window.location.href = row.dataset.href;
      else if (event.key === "x") {
        const box = row.querySelector("input[type=checkbox]");
        if (box) box.click();
      } else return;
      event.preventDefault();
      if (next) next.focus();
    });
  });

  // j/k from nowhere start at the first row.
  document.addEventListener("keydown", (event) => {
    if ((event.key !== "j" && event.key !== "k") || typing(document.activeElement)) return;
    if (document.activeElement && document.activeElement.closest("[data-nav-table], .tree")) return;
    const table = document.querySelector("table[data-nav-table]");
    const first = table && rowsOf(table)[0];
    if (first) {
      event.preventDefault();
      first.focus();
    }
  });

  // --- bulk selection ------------------------------------------------------------

  const bulkForm = document.getElementById("bulk");
  const bulkBar = document.querySelector("[data-bulk]");
  function updateBulk() {
    if (!bulkForm || !bulkBar) return;
    const boxes = bulkForm.querySelectorAll("input[name=trace_id]");
    const checked = bulkForm.querySelectorAll("input[name=trace_id]:checked").length;
    bulkBar.hidden = checked === 0;
    bulkBar.querySelector("[data-selected-count]").textContent = checked + " selected";
    const all = bulkForm.querySelector("[data-select-all]");
    if (all) {
      all.checked = checked > 0 && checked === boxes.length;
      all.indeterminate = checked > 0 && checked < boxes.length;
    }
  }
  if (bulkForm) {
    bulkForm.addEventListener("change", (event) => {
      if (event.target.matches("[data-select-all]")) {
        bulkForm.querySelectorAll("input[name=trace_id]").forEach((box) => {
          box.checked = event.target.checked;
        });
      }
      updateBulk();
    });
    updateBulk();
  }

  // --- auto-refresh of the traces table ------------------------------------------

  const live = document.querySelector("input[data-live]");
  if (live) {
    const body = document.querySelector("tbody[data-rows]");
    const every = 4000;
    let busy = false;
    const tick = async () => {
      if (!live.checked || document.hidden || busy) return;
      busy = true;
      try {
        const response = await fetch(live.dataset.live, { headers: { accept: "text/html" } });
        if (!response.ok) return;
        const html = await response.text();
        if (!body) {
          if (html.trim()) window.location.reload();
          return;
        }
        const checked = new Set(
          Array.from(body.querySelectorAll("input[name=trace_id]:checked"), (b) => b.value),
        );
        const known = new Set(Array.from(body.rows, (r) => r.dataset.trace));
        const focused = document.activeElement && document.activeElement.dataset
          ? document.activeElement.dataset.trace
          : null;
        body.innerHTML = html;
        for (const row of body.rows) {
          const box = row.querySelector("input[name=trace_id]");
          if (box && checked.has(box.value)) box.checked = true;
          if (!known.has(row.dataset.trace)) row.classList.add("fresh");
          if (focused && row.dataset.trace === focused) row.focus();
        }
        updateBulk();
      } catch (_) {
        // The server may be restarting; try again on the next tick.
      } finally {
        busy = false;
      }
    };
    setInterval(tick, every);
  }

  // --- the span tree ----------------------------------------------------------------

  const tree = document.querySelector(".tree[role=tree]");
  if (!tree) return;
  const detail = document.getElementById("detail");
  const nodes = Array.from(tree.querySelectorAll(".node"));
  const indexOf = new Map(nodes.map((node, i) => [node, i]));
  const byId = new Map(nodes.map((node) => [node.dataset.id, node]));
  const depth = (node) => Number(node.getAttribute("aria-level")) - 1;
  const cache = new Map();
  let selectedNode = tree.querySelector(".node[aria-selected=true]");
  let loadSeq = 0;
  let loadTimer = null;

  // Show or hide the rows below ``node`` after it was expanded or collapsed.
  function refreshSubtree(node) {
    const start = indexOf.get(node);
    const d = depth(node);
    let limit = node.getAttribute("aria-expanded") === "false" ? d : Infinity;
    for (let i = start + 1; i < nodes.length; i++) {
      const child = nodes[i];
      const cd = depth(child);
      if (cd <= d) break;
      if (cd > limit) {
        child.classList.add("hidden");
      } else {
        child.classList.remove("hidden");
        limit = child.getAttribute("aria-expanded") === "false" ? cd : Infinity;
      }
    }
  }

  function setExpanded(node, open) {
    if (!node.hasAttribute("aria-expanded")) return;
    node.setAttribute("aria-expanded", open ? "true" : "false");
    refreshSubtree(node);
  }

  function setAll(open) {
    for (const node of nodes) {
      if (node.hasAttribute("aria-expanded")) node.setAttribute("aria-expanded", open ? "true" : "false");
      node.classList.toggle("hidden", !open && depth(node) > 0);
    }
    if (!open && selectedNode && selectedNode.classList.contains("hidden")) {
      focusNode(rootOf(selectedNode));
    }
  }

  function rootOf(node) {
    let i = indexOf.get(node);
    while (i > 0 && depth(nodes[i]) > 0) i--;
    return nodes[i];
  }

  function parentOf(node) {
    const d = depth(node);
    for (let i = indexOf.get(node) - 1; i >= 0; i--) if (depth(nodes[i]) < d) return nodes[i];
    return null;
  }

  function visibleStep(node, step) {
    for (let i = indexOf.get(node) + step; i >= 0 && i < nodes.length; i += step) {
      if (!nodes[i].classList.contains("hidden")) return nodes[i];
    }
    return null;
  }

  function reveal(node) {
    for (let p = parentOf(node); p; p = parentOf(p)) {
      if (p.getAttribute("aria-expanded") === "false") setExpanded(p, true);
    }
  }

  async function loadDetail(node) {
    const spanId = node.dataset.id;
    const seq = ++loadSeq;
    const url = `/traces/${tree.dataset.trace}/spans/${spanId}?t0=${tree.dataset.t0}`;
    let html = cache.get(spanId);
    if (html === undefined) {
      detail.classList.add("loading");
      try {
        const response = await fetch(url, { headers: { accept: "text/html" } });
        html = response.ok ? await response.text() : `<p class="muted">Could not load this span (${response.status}).</p>`;
        if (response.ok) cache.set(spanId, html);
      } catch (_) {
        html = '<p class="muted">Could not reach the server.</p>';
      }
    }
    if (seq !== loadSeq) return;
    detail.classList.remove("loading");
    detail.innerHTML = html;
    detail.scrollTop = 0;
  }

  function select(node, { immediate = false, focus = true } = {}) {
    if (!node) return;
    reveal(node);
    if (selectedNode && selectedNode !== node) {
      selectedNode.removeAttribute("aria-selected");
      selectedNode.tabIndex = -1;
    }
    node.setAttribute("aria-selected", "true");
    node.tabIndex = 0;
    if (focus) node.focus({ preventScroll: true });
    scrollTree(node, false);
    if (selectedNode === node && detail.querySelector(`[data-span="${node.dataset.id}"]`)) return;
    selectedNode = node;
    const url = new URL(window.location.href);
    url.searchParams.set("span", node.dataset.id);
    history.replaceState(null, "", url);
    // Tag edits return to the span in view.
    document.querySelectorAll("input[name=span]").forEach((input) => {
      input.value = node.dataset.id;
    });
    clearTimeout(loadTimer);
    // Arrowing through the tree loads only where the keyboard comes to rest.
    if (immediate) loadDetail(node);
    else loadTimer = setTimeout(() => loadDetail(node), 120);
  }

  // Scroll the tree's own box (never the page) so ``node`` is in view.
  function scrollTree(node, center) {
    const top = node.offsetTop;
    const bottom = top + node.offsetHeight;
    if (center) tree.scrollTop = top - tree.clientHeight / 2;
    else if (top < tree.scrollTop) tree.scrollTop = top;
    else if (bottom > tree.scrollTop + tree.clientHeight) tree.scrollTop = bottom - tree.clientHeight;
  }

  function focusNode(node) {
    if (node) select(node);
  }

  tree.addEventListener("click", (event) => {
    const node = event.target.closest(".node");
    if (!node) return;
    event.preventDefault();
    if (event.target.closest(".tw")) {
      setExpanded(node, node.getAttribute("aria-expanded") === "false");
      if (!node.hasAttribute("tabindex")) node.tabIndex = -1;
      node.focus();
      return;
    }
    select(node, { immediate: true });
  });

  tree.addEventListener("keydown", (event) => {
    const node = event.target.closest(".node");
    if (!node) return;
    const expanded = node.getAttribute("aria-expanded");
    switch (event.key) {
      case "ArrowDown":
      case "j":
        focusNode(visibleStep(node, 1));
        break;
      case "ArrowUp":
      case "k":
        focusNode(visibleStep(node, -1));
        break;
      case "ArrowRight":
      case "l":
        if (expanded === "false") setExpanded(node, true);
        else if (expanded === "true") focusNode(visibleStep(node, 1));
        break;
      case "ArrowLeft":
      case "h":
        if (expanded === "true") setExpanded(node, false);
        else focusNode(parentOf(node));
        break;
      case "Home":
        focusNode(nodes[0]);
        break;
      case "End":
        focusNode([...nodes].reverse().find((n) => !n.classList.contains("hidden")));
        break;
      case "Enter":
      case " ":
        select(node, { immediate: true });
        break;
      default:
        return;
    }
    event.preventDefault();
  });

  // Attempt rows in a gateway span's panel select that span in the tree.
  detail.addEventListener("click", (event) => {
    const link = event.target.closest("[data-select-span]");
    if (!link) return;
    const node = byId.get(link.dataset.selectSpan);
    if (!node) return;
    event.preventDefault();
    select(node, { immediate: true });
  });

  const expandAll = document.querySelector("[data-expand-all]");
  const collapseAll = document.querySelector("[data-collapse-all]");
  if (expandAll) expandAll.addEventListener("click", () => setAll(true));
  if (collapseAll) collapseAll.addEventListener("click", () => setAll(false));

  if (selectedNode) {
    scrollTree(selectedNode, true);
    if (new URL(window.location.href).searchParams.has("span")) {
      selectedNode.focus({ preventScroll: true });
    }
  }
})();
