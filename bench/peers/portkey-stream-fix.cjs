// Make @portkey-ai/gateway 1.15.2 stream on Node 20.
//
// Its response service appends x-portkey-* headers to the Response it is about to return.
// For `stream: true` that Response wraps the upstream fetch() answer, whose Headers are
// immutable under Node 20's undici, so every streamed request ends in HTTP 500
// ("TypeError: immutable" in updateHeaders). The fix proposed upstream copies the streamed
// Response first; this applies the same change to the built file, for streams only, so the
// non-streaming path is measured unchanged.
//
//   node portkey-stream-fix.cjs node_modules/@portkey-ai/gateway/build
"use strict";

const fs = require("fs");
const path = require("path");

const file = path.join(process.argv[2] || ".", "start-server.js");
const before = "this.updateHeaders(i,n.cacheStatus,o),{response:i,";
const after =
  "this.context.isStreaming&&(i=new Response(i.body,{status:i.status," +
  "statusText:i.statusText,headers:new Headers(i.headers)}))," +
  before;

const source = fs.readFileSync(file, "utf8");
if (source.includes(after)) {
  process.exit(0);
}
const count = source.split(before).length - 1;
if (count !== 1) {
  console.error(`portkey-stream-fix: expected one match in ${file}, found ${count}`);
  process.exit(1);
}
fs.writeFileSync(file, source.replace(before, after));
