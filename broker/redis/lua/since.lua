#!lua flags=no-writes
-- Reads a channel's epoch, newest offset and the history entries from a given
-- offset on, in one atomic step, so that the entries belong to the epoch
-- returned with them. Whether they cover a position is decided by the caller.
--
-- KEYS[1]  meta hash (see publish.lua)
-- KEYS[2]  history stream
-- ARGV[1]  first offset wanted
-- ARGV[2]  at most this many entries
--
-- Returns {epoch, offset, entries} or {} when the channel has no epoch.
local m = redis.call('hmget', KEYS[1], 'e', 'o')
if not m[1] then
  return {}
end
local entries = redis.call('xrange', KEYS[2], ARGV[1] .. '-0', '+', 'COUNT', ARGV[2])
return {m[1], tonumber(m[2]), entries}
