-- wrk script: every request is POST <url path> with one `tools/call` of `echo` in an open MCP session
-- (Mcp-Session-Id and Mcp-Protocol-Version come from wrk's -H). Each request has its own JSON-RPC
-- id: a session's requests in flight together must not share one. The `done` hook is latency.lua's.
local dir = debug.getinfo(1, 'S').source:match('^@(.*/)') or './'
dofile(dir .. 'latency.lua')

wrk.method = 'POST'
wrk.headers['Content-Type'] = 'application/json'
wrk.headers['Accept'] = 'application/json, text/event-stream'

local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set('tid', threads)
end

local n = 0
function request()
  n = n + 1
  local body = '{"jsonrpc":"2.0","id":"' .. tid .. '-' .. n ..
    '","method":"tools/call","params":{"name":"echo","arguments":{"text":"hello"}}}'
  -- nil headers: wrk.format then uses wrk.headers, which hold the -H ones too.
  return wrk.format(nil, nil, nil, body)
end
