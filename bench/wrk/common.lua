-- common.lua: what the benchmark wrk scripts (bench/etcd-kv.lua,
-- bench/wrk/v1-kv.lua) share, loaded with dofile(): their arguments, and
-- done(), one JSON line (latencies in microseconds) that bench-lib.sh's
-- bl_wrk and server-bench.sh parse.

-- bench_args(args, name, default, modes): MODE KEYS VALUE_SIZE from wrk's
-- script arguments (defaults: default, 10000, 256); MODE must be one of
-- modes, else an error names the script. Also seeds math.random apart per
-- thread (id, where the script's setup() sets one).
function bench_args(args, name, default, modes)
	local mode = args[1] or default
	local nkeys = tonumber(args[2] or "10000")
	local vsize = tonumber(args[3] or "256")
	local known = false
	for _, m in ipairs(modes) do
		known = known or m == mode
	end
	if not known then
		error(name .. ": MODE must be " .. table.concat(modes, ", ", 1, #modes - 1) ..
		      " or " .. modes[#modes] .. ", not " .. mode, 2) -- at the caller's line
	end
	math.randomseed(os.time() * 1000 + (id or 0))
	return mode, nkeys, vsize
end

-- Non-2xx/3xx answers (errors.status) do not count as ok.

function done(summary, latency, requests)
	local e = summary.errors
	local secs = summary.duration / 1e6
	local ok = summary.requests - e.status
	io.write(string.format(
		'{"tool":"wrk","requests":%d,"ok":%d,"window_s":%.3f,"ops_per_s":%.1f,' ..
		'"latency_us":{"p50":%.1f,"p90":%.1f,"p99":%.1f,"p999":%.1f,"max":%.1f,"mean":%.1f},' ..
		'"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}}\n',
		summary.requests, ok, secs, ok / secs,
		latency:percentile(50), latency:percentile(90), latency:percentile(99),
		latency:percentile(99.9), latency.max, latency.mean,
		e.connect, e.read, e.write, e.status, e.timeout))
end
