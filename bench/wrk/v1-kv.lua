-- v1-kv.lua: wrk script for confman-api's native API, the /v1 rows of api-bench.sh.
--
--   wrk -t2 -c64 -d10s -s bench/wrk/v1-kv.lua http://127.0.0.1:PORT -- MODE KEYS VALUE_SIZE
--
-- MODE: put  PUT /v1/kv/cm-load/k%08d with VALUE_SIZE letters as the body
--       get  GET /v1/kv/cm-load/k%08d                            (follower read)
--       lin  GET /v1/kv/cm-load/k%08d?consistency=linearizable
-- Keys uniform among KEYS, the same names as cm-load and etcd-kv.lua use.
-- done() prints one JSON line in etcd-kv.lua's format.

local mode, nkeys, value, paths

function init(args)
	mode = args[1] or "get"
	nkeys = tonumber(args[2] or "10000")
	local vsize = tonumber(args[3] or "256")
	if mode ~= "put" and mode ~= "get" and mode ~= "lin" then
		error("v1-kv.lua: MODE must be put, get or lin, not " .. mode)
	end
	math.randomseed(os.time() * 1000 + (id or 0))
	value = string.rep("v", vsize)
	local q = mode == "lin" and "?consistency=linearizable" or ""
	paths = {}
	for k = 0, nkeys - 1 do
		paths[k] = string.format("/v1/kv/cm-load/k%08d", k) .. q
	end
end

function request()
	local p = paths[math.random(0, nkeys - 1)]
	if mode == "put" then
		return wrk.format("PUT", p, nil, value)
	end
	return wrk.format("GET", p)
end

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
