-- Records a revocation unless a later one of the same key is in force, and
-- announces it to every instance.
--
-- KEYS[1]  revocation key (tenant, or tenant and user)
-- ARGV[1]  revocation time, Unix nanoseconds, zero-padded to 20 digits so
--          that string order is time order
-- ARGV[2]  expiry, Unix milliseconds
-- ARGV[3]  control Pub/Sub channel
-- ARGV[4]  control message
local cur = redis.call('get', KEYS[1])
if not cur or cur < ARGV[1] then
  redis.call('set', KEYS[1], ARGV[1], 'PXAT', ARGV[2])
end
redis.call('publish', ARGV[3], ARGV[4])
return 1
