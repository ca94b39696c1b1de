-- Returns a channel's epoch and newest offset, creating the epoch if the
-- channel has none, so that a cursor at offset 0 of it stays valid once
-- events arrive. The TTL is refreshed: a channel streams are opened on keeps
-- its epoch.
--
-- KEYS[1]  meta hash (see publish.lua)
-- KEYS[2]  history stream
-- ARGV[1]  epoch to use if the channel has none
-- ARGV[2]  history TTL, milliseconds
--
-- Returns {epoch, offset}.
local e = redis.call('hget', KEYS[1], 'e')
if not e then
  e = ARGV[1]
  redis.call('del', KEYS[2])
  redis.call('hset', KEYS[1], 'e', e, 'o', 0)
end
redis.call('pexpire', KEYS[1], ARGV[2])
return {e, tonumber(redis.call('hget', KEYS[1], 'o'))}
