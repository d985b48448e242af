-- wrk script for scripts/bench-tiles.sh: requests the paths listed (one per line) in the file
-- named by $BENCH_PATHS, as a map client would (with $BENCH_ACCEPT as Accept-Encoding; an empty
-- $BENCH_ACCEPT sends none).
--   BENCH_MODE=random      each request picks a path at random (warm runs);
--   BENCH_MODE=sequential  each thread walks its own slice of the list once (cold runs: the list
--                          is longer than a run can exhaust, so every request is a first one).
-- $BENCH_THREADS must equal wrk's -t.
local threads = {}

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  paths = {}
  for line in io.lines(os.getenv("BENCH_PATHS")) do
    paths[#paths + 1] = line
  end
  mode = os.getenv("BENCH_MODE") or "random"
  local slice = math.floor(#paths / tonumber(os.getenv("BENCH_THREADS") or "1"))
  next_index = id * slice + 1
  last_index = next_index + slice - 1
  exhausted = false
  math.randomseed(42 + id)
  local accept = os.getenv("BENCH_ACCEPT") or "gzip"
  if accept ~= "" then
    wrk.headers["Accept-Encoding"] = accept
  end
end

function request()
  local path
  if mode == "sequential" then
    if next_index > last_index then
      exhausted = true
      next_index = last_index
    end
    path = paths[next_index]
    next_index = next_index + 1
  else
    path = paths[math.random(#paths)]
  end
  return wrk.format("GET", path)
end

function done(summary, latency, requests)
  for _, thread in ipairs(threads) do
    if thread:get("exhausted") then
      io.write("WARNING: a thread ran out of fresh paths; the cold figure includes repeats\n")
    end
  end
end
