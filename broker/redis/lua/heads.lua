#!lua
-- Returns a channel's epoch and newest offset, or {0, 0} when the channel has
-- no history; it creates nothing, so that naming a channel leaves no state
-- behind. The TTL of an existing history is refreshed: a channel streams
-- are opened on keeps its epoch.
--
-- KEYS[1]  meta hash (see publish.lua)
-- KEYS[2]  history stream
-- ARGV[1]  history TTL, milliseconds
--
-- Returns {epoch, offset}.
local m = redis.call('hmget', KEYS[1], 'e', 'o')
if not m[1] then
  return {'0', 0}
end
redis.call('pexpire', KEYS[1], ARGV[1])
redis.call('pexpire', KEYS[2], ARGV[1])
return {m[1], tonumber(m[2])}
