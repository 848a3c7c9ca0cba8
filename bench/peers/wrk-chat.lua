-- wrk script: POST a small chat request (gpt-4o, 2 messages).
-- Env: MODEL (default gpt-4o), STREAM (1 => "stream": true), AUTH (bearer token),
--      PORTKEY_HOST (if set, adds x-portkey-provider: openai + x-portkey-custom-host: $PORTKEY_HOST),
--      HEADERS (extra "name: value" lines, one per line; how each gateway is told its route).
local model = os.getenv("MODEL") or "gpt-4o"
local stream = os.getenv("STREAM") == "1"
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. (os.getenv("AUTH") or "sk-fake")
local ph = os.getenv("PORTKEY_HOST")
if ph and ph ~= "" then
  wrk.headers["x-portkey-provider"] = "openai"
  wrk.headers["x-portkey-custom-host"] = ph
end
for line in (os.getenv("HEADERS") or ""):gmatch("[^\n]+") do
  local name, value = line:match("^%s*([^:]+):%s*(.-)%s*$")
  if name then wrk.headers[name] = value end
end
wrk.body = '{"model":"' .. model .. '","messages":[{"role":"system","content":"You are a helpful assistant."},' ..
           '{"role":"user","content":"Say hello in one short sentence."}]' ..
           (stream and ',"stream":true' or '') .. '}'
wrk.path = "/v1/chat/completions"
