-- v1-kv.lua: wrk script for confman-api's native API, the /v1 rows of api-bench.sh.
--
--   wrk -t2 -c64 -d10s -s bench/wrk/v1-kv.lua http://127.0.0.1:PORT -- MODE KEYS VALUE_SIZE
--
-- MODE: put  PUT /v1/kv/cm-load/k%08d with VALUE_SIZE letters as the body
--       get  GET /v1/kv/cm-load/k%08d                            (follower read)
--       lin  GET /v1/kv/cm-load/k%08d?consistency=linearizable
-- Keys uniform among KEYS, the same names as cm-load and etcd-kv.lua use.
-- done() (common.lua) prints one JSON line, as for etcd-kv.lua.

-- bench_args() and done() are common.lua's, shared by the bench scripts.
-- wrk has no module path of its own: load it relative to this file.
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")

local mode, nkeys, value, paths

function init(args)
	local vsize
	mode, nkeys, vsize = bench_args(args, "v1-kv.lua", "get", {"put", "get", "lin"})
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
