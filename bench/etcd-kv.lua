-- etcd-kv.lua: wrk script for etcd's v3 JSON gateway, the etcd side of server-bench.sh.
--
--   wrk -t2 -c64 -d10s -s bench/etcd-kv.lua http://127.0.0.1:2379 -- MODE KEYS VALUE_SIZE
--
-- MODE: put     POST /v3/kv/put   {"key": K, "value": V}
--       range   POST /v3/kv/range {"key": K}                       (linearizable)
--       serial  POST /v3/kv/range {"key": K, "serializable": true} (local read)
-- K is PREFIX/k%08d (PREFIX /cm-load, as cm-load names its keys), chosen
-- uniformly among KEYS; V is VALUE_SIZE letters. The gateway wants both
-- base64-encoded; they are encoded once, in init(), not per request.
--
-- Each connection has one request outstanding (wrk does not pipeline), so
-- -c is the number of requests in flight: the same closed loop as cm-load's
-- --clients. done() prints one JSON line (latencies in microseconds).

local b64chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

local function b64char(n)
	return b64chars:sub(n + 1, n + 1)
end

local function b64(s)
	local out = {}
	for i = 1, #s, 3 do
		local a, b, c = s:byte(i, i + 2)
		local n = a * 65536 + (b or 0) * 256 + (c or 0)
		local q = {
			math.floor(n / 262144) % 64, math.floor(n / 4096) % 64,
			math.floor(n / 64) % 64, n % 64,
		}
		out[#out + 1] = b64char(q[1]) .. b64char(q[2])
		out[#out + 1] = b and b64char(q[3]) or "="
		out[#out + 1] = c and b64char(q[4]) or "="
	end
	return table.concat(out)
end

local threads = {}
local counter = 0

function setup(thread)
	counter = counter + 1
	thread:set("id", counter)
	table.insert(threads, thread)
end

-- bench_args() and done() are common.lua's, shared by the bench scripts.
-- wrk has no module path of its own: load it relative to this file.
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "wrk/common.lua")

local mode, nkeys, bodies_put, bodies_get
local path

function init(args)
	local vsize
	mode, nkeys, vsize = bench_args(args, "etcd-kv.lua", "put", {"put", "range", "serial"})
	local letters = {}
	for i = 1, vsize do
		letters[i] = string.char(97 + (i * 7 + (id or 0)) % 26)
	end
	local v64 = b64(table.concat(letters))
	-- One body per key, built once: the request path then only picks one.
	bodies_put, bodies_get = {}, {}
	local serial = mode == "serial" and ',"serializable":true' or ""
	for k = 0, nkeys - 1 do
		local k64 = b64(string.format("/cm-load/k%08d", k))
		if mode == "put" then
			bodies_put[k] = '{"key":"' .. k64 .. '","value":"' .. v64 .. '"}'
		else
			bodies_get[k] = '{"key":"' .. k64 .. '"' .. serial .. "}"
		end
	end
	path = mode == "put" and "/v3/kv/put" or "/v3/kv/range"
	wrk.headers["Content-Type"] = "application/json"
end

function request()
	local k = math.random(0, nkeys - 1)
	local body = mode == "put" and bodies_put[k] or bodies_get[k]
	return wrk.format("POST", path, nil, body)
end
