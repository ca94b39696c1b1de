-- Appends a batch of events to their channels' histories and publishes each,
-- atomically, so that offsets, history order and Pub/Sub order are one and
-- the same. One run carries many events: Redis pays the script call once per
-- batch instead of once per event.
--
-- KEYS[2i-1]  meta hash of event i's channel: e = epoch (decimal uint64, kept
--             as a string: Lua numbers cannot hold it), o = offset of the
--             newest event
-- KEYS[2i]    history stream of event i's channel; entry id "<offset>-0",
--             fields t = type, d = data, p = publish time (Unix ns)
-- ARGV[1]     epoch for a channel that has none (random, chosen by the caller)
-- ARGV[2]     publish time, Unix nanoseconds (decimal)
-- ARGV[3]     history size (MAXLEN, exact)
-- ARGV[4]     history TTL, milliseconds
-- ARGV[3i+2]  Pub/Sub channel of event i
-- ARGV[3i+3]  type of event i
-- ARGV[3i+4]  data of event i
--
-- Returns {epoch_1, offset_1, epoch_2, offset_2, ...}, one pair an event.
local now, size, ttl = ARGV[2], ARGV[3], ARGV[4]
local epochs = {} -- meta key -> epoch, for the channels seen in this run
local out = {}
for i = 1, #KEYS / 2 do
  local mk, sk = KEYS[2 * i - 1], KEYS[2 * i]
  local e = epochs[mk]
  local first = not e -- the channel's first event in this run
  if first then
    e = redis.call('hget', mk, 'e')
    if not e then
      -- A new epoch starts a new history: drop whatever an older epoch left.
      e = ARGV[1]
      redis.call('del', sk)
      redis.call('hset', mk, 'e', e, 'o', 0)
    end
    epochs[mk] = e
    -- TTLs are set as soon as each key exists, so that an error later in
    -- the run leaves no key without one.
    redis.call('pexpire', mk, ttl)
  end
  local o = redis.call('hincrby', mk, 'o', 1)
  local os = string.format('%d', o)
  local a = 3 * i + 2
  redis.call('xadd', sk, 'MAXLEN', size, os .. '-0', 't', ARGV[a + 1], 'd', ARGV[a + 2], 'p', now)
  if first then
    redis.call('pexpire', sk, ttl)
  end
  -- Envelope (see decodeEnvelope in pubsub.go): version, epoch, offset, time, type, data.
  redis.call('publish', ARGV[a], '1\n' .. e .. '\n' .. os .. '\n' .. now .. '\n' .. ARGV[a + 1] .. '\n' .. ARGV[a + 2])
  out[2 * i - 1] = e
  out[2 * i] = o
end
return out
