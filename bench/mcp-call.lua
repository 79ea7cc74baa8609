-- wrk script: every request is POST <url path> with one small MCP tools/call (JSON-RPC), the
-- headers an MCP client sends (the bearer token comes from wrk's -H). The `done` hook is
-- latency.lua's, loaded from this script's own directory.
local dir = debug.getinfo(1, 'S').source:match('^@(.*/)') or './'
dofile(dir .. 'latency.lua')

wrk.method = 'POST'
wrk.body = '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hello"}}}'
wrk.headers['Content-Type'] = 'application/json'
wrk.headers['Accept'] = 'application/json, text/event-stream'
