-- io_spec.lua: dd.save, dd.load and dd.safetensors_header, including files
-- exchanged with an independent Python reader/writer (tests/interop_safetensors.py,
-- json + struct only). Run from the repo root: ./deepdance /usr/bin/busted tests/lua

local PYTHON = "/usr/bin/python3"
local spec_dir = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local INTEROP = spec_dir .. "/../interop_safetensors.py"

local helpers = dofile("tests/lua/support/helpers.lua")
local quote = helpers.quote

-- Runs a shell command; returns its output and whether it exited 0.
local function run(cmd)
  local p = assert(io.popen(cmd .. " 2>&1"))
  local out = p:read("a")
  local ok = p:close()
  return out, ok == true
end

local slurp = helpers.slurp
local spit = helpers.spit

-- The float32 nearest to x, as dd.load returns it.
local function f32(x)
  return (string.unpack("<f", string.pack("<f", x)))
end

-- The error message of f(...), which must fail.
local error_of = helpers.error_of
local assert_contains = helpers.assert_contains

-- A fresh empty directory, removed with everything in it after each test.
local dir
before_each(function()
  dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -p " .. quote(dir)))
end)
after_each(function()
  os.execute("rm -rf " .. quote(dir))
end)

local function listing(d)
  return (run("ls -A " .. quote(d)))
end

describe("dd.save / dd.load", function()
  it("round-trips tensors and metadata", function()
    local path = dir .. "/a.safetensors"
    local w = dd.tensor{{1.5, -2, 0.25}, {1e-3, 3e38, -0.0}}
    dd.save(path, {weight = w, bias = dd.ones(3)}, {step = 12, lr = 0.1, note = "hé \"q\""})
    local ts, meta = dd.load(path)
    assert.same({2, 3}, ts.weight:shape())
    assert.same(w:totable(), ts.weight:totable())
    assert.same({1, 1, 1}, ts.bias:totable())
    assert.same({step = "12", lr = "0.1", note = "hé \"q\""}, meta)
  end)

  it("saves non-contiguous views in logical order", function()
    local path = dir .. "/t.safetensors"
    local t = dd.arange(12):view(3, 4):transpose(1, 2)
    dd.save(path, {t = t})
    local back = dd.load(path).t
    assert.same({4, 3}, back:shape())
    assert.same(t:totable(), back:totable())
    assert.same({{0, 4, 8}, {1, 5, 9}, {2, 6, 10}, {3, 7, 11}}, back:totable())
    assert.equal(9, back:get(2, 3))
  end)

  it("round-trips scalars, empty tensors and an empty table", function()
    local path = dir .. "/s.safetensors"
    dd.save(path, {s = dd.tensor(3.5), e = dd.zeros(0, 4)})
    local ts, meta = dd.load(path)
    assert.same({}, ts.s:shape())
    assert.equal(3.5, ts.s:totable())
    assert.same({0, 4}, ts.e:shape())
    assert.same({}, meta)
    dd.save(path, {})
    ts, meta = dd.load(path)
    assert.same({}, ts)
    assert.same({}, meta)
  end)

  it("writes identical bytes for identical input", function()
    local a, b = dir .. "/1.safetensors", dir .. "/2.safetensors"
    local ts = {x = dd.arange(5), y = dd.ones(2, 2), z = dd.tensor(1)}
    dd.save(a, ts, {k = "v", n = 1})
    dd.save(b, ts, {n = 1, k = "v"})
    assert.equal(slurp(a), slurp(b))
    -- the header: 8-byte length, compact JSON padded with spaces to 8 bytes
    local n = string.unpack("<I8", slurp(a))
    assert.equal(0, n % 8)
    local want = '{"__metadata__":{"k":"v","n":"1"},"x":{"dtype":"F32","shape":[5],"data_offsets":[0,20]}'
    assert.equal(want, slurp(a):sub(9, 8 + #want))
  end)

  it("replaces a file atomically and keeps the old one when saving fails", function()
    local path = dir .. "/m.safetensors"
    dd.save(path, {x = dd.ones(2)})
    dd.save(path, {x = dd.zeros(3)})
    assert.same({0, 0, 0}, dd.load(path).x:totable())
    local before = slurp(path)
    -- refused before anything is written
    assert_contains(error_of(dd.save, path, {x = dd.ones(1)}, {bad = {}}), "metadata 'bad'")
    -- fails at the rename: a directory is in the way
    assert(os.execute("mkdir " .. quote(dir .. "/sub")))
    local err = error_of(dd.save, dir .. "/sub", {x = dd.ones(1)})
    assert_contains(err, "dd.save: " .. dir .. "/sub: rename failed")
    assert.equal(before, slurp(path))
    assert.equal("m.safetensors\nsub\n", listing(dir))   -- no temporary file left
  end)

  it("reports a missing directory with the path", function()
    local path = dir .. "/no/such/x.safetensors"
    local err = error_of(dd.save, path, {x = dd.ones(1)})
    assert_contains(err, "dd.save: " .. path .. ": cannot create temporary file")
    assert_contains(err, "No such file or directory")
  end)

  it("checks its arguments", function()
    local t = dd.ones(2)
    local p = dir .. "/x.safetensors"
    assert_contains(error_of(dd.save, 42, {t = t}), "dd.save: expected a path string as argument 1, got number")
    assert_contains(error_of(dd.save, p), "dd.save: expected a table of tensors as argument 2, got no value")
    assert_contains(error_of(dd.save, p, {t = t}, "meta"),
                    "dd.save: expected a metadata table or nil as argument 3, got string")
    assert_contains(error_of(dd.save, p, {t}), "dd.save: tensor names must be strings, got number key 1")
    assert_contains(error_of(dd.save, p, {w = "nope"}), "dd.save: tensor 'w': expected a Tensor, got string")
    assert_contains(error_of(dd.save, p, {w = {1, 2}}), "dd.save: tensor 'w': expected a Tensor, got table")
    assert_contains(error_of(dd.save, p, {t = t}, {flag = true}),
                    "dd.save: metadata 'flag': expected a string or number, got boolean")
    assert_contains(error_of(dd.save, p, {t = t}, {[1] = "x"}),
                    "dd.save: metadata keys must be strings, got number key 1")
    assert_contains(error_of(dd.save, p, {__metadata__ = t}), "'__metadata__' cannot be a tensor name")
    assert_contains(error_of(dd.load, nil), "dd.load: expected a path string as argument 1, got nil")
    assert_contains(error_of(dd.load, p, {}), "dd.load: expected 1 argument (path), got 2")
    assert.equal("", listing(dir))
  end)
end)

describe("dd.load refuses bad files", function()
  it("names a missing file", function()
    local path = dir .. "/missing.safetensors"
    assert_contains(error_of(dd.load, path), "dd.load: " .. path .. ": cannot open: No such file or directory")
  end)

  it("names a directory", function()
    assert_contains(error_of(dd.load, dir), "dd.load: " .. dir .. ": not a regular file (a directory)")
  end)

  it("refuses short, truncated and corrupt files", function()
    local path = dir .. "/bad.safetensors"
    spit(path, "")
    assert_contains(error_of(dd.load, path), path .. ": file is 0 bytes, too short")
    spit(path, "1234567")
    assert_contains(error_of(dd.load, path), path .. ": file is 7 bytes, too short")
    spit(path, "GIF89a this is not a safetensors file at all")
    assert_contains(error_of(dd.load, path), "is above the 104857600-byte limit")

    dd.save(path, {w = dd.ones(4, 4)})
    local good = slurp(path)
    spit(path, good:sub(1, -2))
    local err = error_of(dd.load, path)
    assert_contains(err, "dd.load: " .. path .. ": tensor 'w': data_offsets: end 64 is beyond the data buffer (63 bytes")
    spit(path, good:sub(1, 20))
    assert_contains(error_of(dd.load, path), "more than the 12 bytes after it")
  end)

  it("refuses hostile headers with the tensor, field, expected and actual value", function()
    local path = dir .. "/h.safetensors"
    local function with_header(json, ndata)
      spit(path, string.pack("<I8", #json) .. json .. string.rep("\0", ndata or 0))
      return error_of(dd.load, path)
    end
    assert_contains(with_header('{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}', 8),
                    "tensor 'w': data_offsets [0, 8] hold 8 bytes, shape (3) of F32 needs 12")
    assert_contains(with_header('{"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,0]}}'),
                    "tensor 'w': shape[0]: expected an integer in [0, 1099511627776], got -2")
    assert_contains(with_header('{"w":{"dtype":"Q4","shape":[1],"data_offsets":[0,1]}}', 1),
                    "tensor 'w': dtype: 'Q4' is not supported")
    assert_contains(with_header('{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},'
                                .. '"b":{"dtype":"U8","shape":[4],"data_offsets":[2,6]}}', 6),
                    "tensors 'a' and 'b' overlap: data_offsets [0, 4] and [2, 6]")
    assert_contains(with_header('{"__metadata__":{"epoch":3}}'),
                    "__metadata__: key 'epoch': expected a string value, got 3")
    assert_contains(with_header('{"w": '), "header is not valid JSON")
  end)

  it("closes the file at once, on success and on error", function()
    local ok_lfs, lfs = pcall(require, "lfs")
    if not ok_lfs then return pending("needs lfs to count open files") end
    local function open_fds()
      local n = 0
      for _ in lfs.dir("/proc/self/fd") do n = n + 1 end
      return n
    end
    local path, bad = dir .. "/t.safetensors", dir .. "/bad.safetensors"
    dd.save(path, {w = dd.ones(8)})
    spit(bad, slurp(path):sub(1, -5))
    -- with the collector stopped, only the to-be-closed slot can close them
    collectgarbage("stop")
    local before = open_fds()
    for _ = 1, 50 do
      assert.is_false(pcall(dd.load, bad))
      dd.load(path)
      dd.safetensors_header(path)
    end
    local after = open_fds()
    collectgarbage("restart")
    assert.equal(before, after)
  end)
end)

describe("dd.load and memory", function()
  it("refuses a header claiming more than the machine's memory, before allocating", function()
    -- a sparse 1 TiB file: 2^40 U8 elements would need 4 TiB as float32
    local path = dir .. "/huge.safetensors"
    local n = 1 << 40
    local json = ('{"big":{"dtype":"U8","shape":[%d],"data_offsets":[0,%d]}}'):format(n, n)
    local f = assert(io.open(path, "wb"))
    f:write(string.pack("<I8", #json), json)
    local sparse = f:seek("set", 8 + #json + n - 1) and f:write("\0")
    f:close()
    if not sparse then return pending("file system without sparse 1 TiB files") end
    local err = error_of(dd.load, path)
    assert_contains(err, "dd.load: " .. path .. ": tensors up to 'big' need 4096.0 GiB as float32")
    assert.same({n}, dd.safetensors_header(path).big.shape)   -- the header alone is fine
  end)
end)

describe("dd.safetensors_header", function()
  it("describes tensors and metadata without loading them", function()
    local path = dir .. "/h.safetensors"
    dd.save(path, {w = dd.ones(2, 3), b = dd.zeros(3)}, {epoch = 4})
    local h = dd.safetensors_header(path)
    -- laid out by name (within one dtype): b first
    assert.same({dtype = "F32", shape = {3}, data_offsets = {0, 12}}, h.b)
    assert.same({dtype = "F32", shape = {2, 3}, data_offsets = {12, 36}}, h.w)
    assert.same({epoch = "4"}, h.__metadata__)
    assert_contains(error_of(dd.safetensors_header, dir .. "/none"), "dd.safetensors_header: " .. dir .. "/none: cannot open")
  end)
end)

describe("safetensors interop with an independent Python implementation", function()
  local has_python = io.open(PYTHON, "rb") ~= nil
  local pit = has_python and it or pending

  pit("dd.load reads every dtype of a file Python wrote", function()
    local path = dir .. "/py.safetensors"
    local out, ok = run(quote(PYTHON) .. " " .. quote(INTEROP) .. " write " .. quote(path))
    assert(ok, out)
    local ts, meta = dd.load(path)
    -- the values of FIXTURE in interop_safetensors.py, as float32
    assert.same({{0, 1.5, -2.25}, {1024.125, 2 ^ -20, -3}}, ts.f32:totable())
    assert.same({f32(0.1), f32(-1e10), f32(1 / 3)}, ts.f64:totable())
    assert.same({{1, -2}, {0.5, 65504}}, ts.f16:totable())
    assert.same({1, -3.5, 256}, ts.bf16:totable())
    assert.same({-3, 0, 2 ^ 40, f32(123456789)}, ts.i64:totable())
    assert.same({-7, 2 ^ 31}, ts.i32:totable())
    assert.same({-32768, 32767}, ts.i16:totable())
    assert.same({-128, 127, -1}, ts.i8:totable())
    assert.same({{0, 255}, {128, 7}}, ts.u8:totable())
    assert.same({1, 0, 1}, ts.bool:totable())
    assert.same({}, ts.scalar:shape())
    assert.equal(7, ts.scalar:totable())
    assert.same({0, 2}, ts.empty:shape())
    assert.same({format = "pt", source = "python ✓"}, meta)
    local h = dd.safetensors_header(path)
    assert.equal("BF16", h.bf16.dtype)
    assert.equal("I64", h.i64.dtype)
    assert.equal("BOOL", h.bool.dtype)
  end)

  pit("Python reads what dd.save wrote", function()
    local path = dir .. "/dd.safetensors"
    -- must match EXPECTED in interop_safetensors.py
    dd.save(path, {
      a = dd.arange(12):view(3, 4):transpose(1, 2),
      b = dd.tensor{{1.5, -2}, {0.25, 0.001}},
      s = dd.tensor(42),
    }, {step = 7, lr = 0.5, name = "interop ✓"})
    local out, ok = run(quote(PYTHON) .. " " .. quote(INTEROP) .. " read " .. quote(path))
    assert(ok, out)
    assert.equal("ok\n", out)
  end)
end)

describe("dd.data.frame_writer", function()
  it("stores round(255 v) clamped to 0..255 (NaN as 0), the same for views and contiguous frames", function()
    local vals = {0, 1, 0.5 / 255, 0.49 / 255, 1.51 / 255, 0.5, 254.5 / 255, -3, 7, 0 / 0, 1 / 0, -1 / 0}
    local want = {0, 255, 1, 0, 2, 128, 255, 0, 255, 0, 255, 0}
    local x = dd.tensor({{{table.unpack(vals, 1, 6)}, {table.unpack(vals, 7, 12)}}})   -- (1, 2, 6)
    local big = dd.zeros(1, 4, 9)
    local view = big:narrow(2, 2, 2):narrow(3, 2, 6)
    view:copy(x)
    assert.is_false(view:is_contiguous())
    local cols = x:transpose(2, 3):contiguous():transpose(2, 3)   -- unit stride down columns
    assert.is_false(cols:is_contiguous())
    local w = dd.data.frame_writer{channels = 1, height = 2, width = 6}
    w:add(x)
    w:add(view)
    w:add(cols)
    local path = dir .. "/f.safetensors"
    w:save(path)
    local fs = dd.data.frames(path)
    assert.are.equal(3, #fs)
    for i = 1, 3 do
      local rows = fs:get(i):totable()[1]
      local got = {table.unpack(rows[1])}
      for _, v in ipairs(rows[2]) do got[#got + 1] = v end
      for k = 1, #want do
        assert.is_true(math.abs(got[k] * 255 - want[k]) < 1e-3,
                       ("frame %d value %s: stored %s, expected %d"):format(i, tostring(vals[k]), got[k] * 255, want[k]))
      end
    end
  end)
end)
