-- safetensors_hostile_spec.lua: files from strangers. One test per rule the
-- safetensors reader enforces (src/safetensors.c, docs/safetensors.md), each
-- with a hand-made malicious or broken file and the exact message: it names
-- the path, the tensor or metadata key, the field, what was expected and what
-- was found. Also: a checkpoint never executes code held in its data.
-- Run from the repo root:
--   ./deepdance /usr/bin/busted -o TAP tests/lua/safetensors_hostile_spec.lua

local helpers = dofile("tests/lua/support/helpers.lua")
local error_of, spit, slurp, quote = helpers.error_of, helpers.spit, helpers.slurp, helpers.quote

local dir, path
before_each(function()
  dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -p " .. quote(dir)))
  path = dir .. "/hostile.safetensors"
end)
after_each(function() os.execute("rm -rf " .. quote(dir)) end)

-- Writes a file: 8-byte length, the header text, ndata zero bytes.
local function write_file(header, ndata)
  spit(path, string.pack("<I8", #header) .. header .. string.rep("\0", ndata or 0))
end

-- dd.load's message for a file with this header, which must be
-- "dd.load: <path>: " followed by what; dd.safetensors_header (which reads
-- the same header) must refuse it with the same words.
local function refuses(header, ndata, what)
  write_file(header, ndata)
  assert.equal("dd.load: " .. path .. ": " .. what, error_of(dd.load, path))
  assert.equal("dd.safetensors_header: " .. path .. ": " .. what, error_of(dd.safetensors_header, path))
end

-- One tensor 'w' with these fields.
local function one(fields) return '{"w":{' .. fields .. '}}' end

local DTYPES = "F64 F32 F16 BF16 I64 I32 I16 I8 U8 BOOL"

describe("a hostile safetensors file: dtype", function()
  it("must be a known dtype name, spelt exactly", function()
    refuses(one '"dtype":"F8_E4M3","shape":[1],"data_offsets":[0,1]', 1,
      "tensor 'w': dtype: 'F8_E4M3' is not supported (expected one of " .. DTYPES .. ")")
    refuses(one '"dtype":"f32","shape":[1],"data_offsets":[0,4]', 4,
      "tensor 'w': dtype: 'f32' is not supported (expected one of " .. DTYPES .. ")")
  end)

  it("must be a string", function()
    refuses(one '"dtype":5,"shape":[1],"data_offsets":[0,1]', 1,
      "tensor 'w': dtype: expected a string (one of " .. DTYPES .. "), got 5")
    refuses(one '"dtype":null,"shape":[1],"data_offsets":[0,1]', 1,
      "tensor 'w': dtype: expected a string (one of " .. DTYPES .. "), got null")
  end)
end)

describe("a hostile safetensors file: shape x dtype size == byte length", function()
  it("refuses ranges longer or shorter than the shape needs, for each element size", function()
    refuses(one '"dtype":"F16","shape":[3],"data_offsets":[0,8]', 8,
      "tensor 'w': data_offsets [0, 8] hold 8 bytes, shape (3) of F16 needs 6")
    refuses(one '"dtype":"F64","shape":[2],"data_offsets":[0,8]', 8,
      "tensor 'w': data_offsets [0, 8] hold 8 bytes, shape (2) of F64 needs 16")
    refuses(one '"dtype":"F32","shape":[2,2],"data_offsets":[4,24]', 24,
      "tensor 'w': data_offsets [4, 24] hold 20 bytes, shape (2,2) of F32 needs 16")
    refuses(one '"dtype":"BOOL","shape":[],"data_offsets":[0,0]', 0,
      "tensor 'w': data_offsets [0, 0] hold 0 bytes, shape () of BOOL needs 1")
    refuses(one '"dtype":"I64","shape":[2,0],"data_offsets":[0,8]', 8,
      "tensor 'w': data_offsets [0, 8] hold 8 bytes, shape (2,0) of I64 needs 0")
  end)
end)

describe("a hostile safetensors file: shape", function()
  it("refuses negative, fractional, float-written and non-numeric sizes", function()
    refuses(one '"dtype":"F32","shape":[-2],"data_offsets":[0,0]', 0,
      "tensor 'w': shape[0]: expected an integer in [0, 1099511627776], got -2")
    refuses(one '"dtype":"F32","shape":[1,2.5],"data_offsets":[0,10]', 10,
      "tensor 'w': shape[1]: expected an integer in [0, 1099511627776], got 2.5")
    refuses(one '"dtype":"F32","shape":["2"],"data_offsets":[0,8]', 8,
      "tensor 'w': shape[0]: expected an integer in [0, 1099511627776], got string \"2\"")
    refuses(one '"dtype":"F32","shape":[2.0],"data_offsets":[0,8]', 8,
      "tensor 'w': shape: expected integers, got 2.0")
    refuses(one '"dtype":"F32","shape":[1e3],"data_offsets":[0,4000]', 4000,
      "tensor 'w': shape: expected integers, got 1e3")
  end)

  it("refuses more than 8 dims, more than 2^40 elements and a shape that is not an array", function()
    refuses(one '"dtype":"F32","shape":[1,1,1,1,1,1,1,1,1],"data_offsets":[0,4]', 4,
      "tensor 'w': shape: expected at most 8 dims, got 9")
    -- 2^20 * 2^20 * 2 = 2^41: the product is checked without overflowing
    refuses(one '"dtype":"U8","shape":[1048576,1048576,2],"data_offsets":[0,0]', 0,
      "tensor 'w': shape (1048576,1048576,2): the sizes up to shape[2] make more than 1099511627776 elements")
    -- no elements, but sizes no tensor can have (the runtime's rule): this
    -- file used to pass the reader and fail later in dd.load, naming neither
    -- the file nor the tensor (found while writing these tests)
    refuses(one '"dtype":"U8","shape":[4294967296,4294967296,0],"data_offsets":[0,0]', 0,
      "tensor 'w': shape (4294967296,4294967296,0): the sizes up to shape[1] make more than 1099511627776 elements")
    write_file(one '"dtype":"U8","shape":[0,4294967296,256],"data_offsets":[0,0]')
    assert.same({0, 4294967296, 256}, dd.load(path).w:shape())
    refuses(one '"dtype":"U8","shape":4,"data_offsets":[0,4]', 4,
      "tensor 'w': shape: expected an array of integers, got 4")
  end)
end)

describe("a hostile safetensors file: offsets inside the file", function()
  it("refuses a range that ends beyond the data buffer", function()
    refuses(one '"dtype":"U8","shape":[4],"data_offsets":[4,8]', 6,
      "tensor 'w': data_offsets: end 8 is beyond the data buffer (6 bytes; file truncated?)")
  end)

  it("refuses a file cut short, by the byte", function()
    dd.save(path, {w = dd.ones(4)})
    local whole = slurp(path)
    spit(path, whole:sub(1, -2))
    assert.equal("dd.load: " .. path .. ": tensor 'w': data_offsets: end 16 is beyond the data buffer "
      .. "(15 bytes; file truncated?)", error_of(dd.load, path))
  end)

  it("refuses begin after end, a wrong count, negatives, fractions and values above 2^53", function()
    refuses(one '"dtype":"U8","shape":[4],"data_offsets":[6,2]', 8,
      "tensor 'w': data_offsets: begin 6 is after end 2")
    refuses(one '"dtype":"U8","shape":[4],"data_offsets":[0]', 8,
      "tensor 'w': data_offsets: expected [begin, end], got an array of 1")
    refuses(one '"dtype":"U8","shape":[4],"data_offsets":[0,4,8]', 8,
      "tensor 'w': data_offsets: expected [begin, end], got an array of 3")
    refuses(one '"dtype":"U8","shape":[4],"data_offsets":[-4,0]', 8,
      "tensor 'w': data_offsets[0]: expected an integer in [0, 9007199254740992], got -4")
    refuses(one '"dtype":"U8","shape":[4],"data_offsets":[0,4.5]', 8,
      "tensor 'w': data_offsets[1]: expected an integer in [0, 9007199254740992], got 4.5")
    refuses(one '"dtype":"U8","shape":[4],"data_offsets":[0,18446744073709551620]', 8,
      "tensor 'w': data_offsets[1]: expected an integer in [0, 9007199254740992], got 1.8446744073709552e+19")
  end)
end)

describe("a hostile safetensors file: ranges do not overlap", function()
  local function two(a, b)
    return ('{"a":{"dtype":"U8","shape":[%d],"data_offsets":[%d,%d]},'
      .. '"b":{"dtype":"U8","shape":[%d],"data_offsets":[%d,%d]}}'):format(a[2] - a[1], a[1], a[2], b[2] - b[1], b[1], b[2])
  end

  it("refuses identical, partly overlapping and nested ranges", function()
    refuses(two({0, 4}, {0, 4}), 8, "tensors 'a' and 'b' overlap: data_offsets [0, 4] and [0, 4]")
    refuses(two({0, 4}, {2, 6}), 8, "tensors 'a' and 'b' overlap: data_offsets [0, 4] and [2, 6]")
    refuses(two({0, 8}, {3, 5}), 8, "tensors 'a' and 'b' overlap: data_offsets [0, 8] and [3, 5]")
    refuses(two({3, 5}, {0, 8}), 8, "tensors 'b' and 'a' overlap: data_offsets [0, 8] and [3, 5]")
  end)

  it("accepts adjacent ranges, gaps and empty tensors anywhere", function()
    write_file(two({4, 8}, {0, 4}), 8)
    local t = dd.load(path)
    assert.same({4}, t.a:shape())
    write_file(two({6, 8}, {0, 2}), 8)
    assert.same({2}, dd.load(path).a:shape())
    write_file(two({2, 2}, {0, 4}), 4)
    assert.same({0}, dd.load(path).a:shape())
  end)
end)

describe("a hostile safetensors file: header size", function()
  it("refuses files under 8 bytes and headers longer than the file", function()
    spit(path, "abc")
    assert.equal("dd.load: " .. path .. ": file is 3 bytes, too short for a safetensors file (at least 8)",
      error_of(dd.load, path))
    spit(path, string.pack("<I8", 100) .. "{}")
    assert.equal("dd.load: " .. path .. ": header length 100 is more than the 2 bytes after it "
      .. "(truncated or not a safetensors file)", error_of(dd.load, path))
  end)

  it("refuses a header length above 100 MiB before reading or allocating it", function()
    spit(path, string.pack("<I8", (100 << 20) + 1) .. "{}")
    assert.equal("dd.load: " .. path .. ": header length 104857601 is above the 104857600-byte limit",
      error_of(dd.load, path))
    spit(path, string.pack("<I8", -1) .. "{}")
    assert.equal("dd.load: " .. path .. ": header length 18446744073709551615 is above the 104857600-byte limit",
      error_of(dd.load, path))
  end)

  it("refuses more than 2^23 JSON values, before parsing them", function()
    refuses('{"a":{"shape":[' .. string.rep("0,", 1 << 23) .. '0]}}', 0,
      "header has more than 8388608 JSON values")
  end)
end)

describe("a hostile safetensors file: metadata", function()
  it("must be an object of unique string keys and string values", function()
    refuses('{"__metadata__":{"epoch":3}}', 0, "__metadata__: key 'epoch': expected a string value, got 3")
    refuses('{"__metadata__":{"k":{"x":"y"}}}', 0, "__metadata__: key 'k': expected a string value, got an object")
    refuses('{"__metadata__":["a"]}', 0, "__metadata__: expected an object of strings, got an array of 1")
    refuses('{"__metadata__":{"k":"a","k":"b"}}', 0, "__metadata__: key 'k' appears twice")
    refuses('{"__metadata__":{},"__metadata__":{}}', 0, "__metadata__ appears twice in the header")
  end)

  it("holds at most 1 MiB of keys and values", function()
    refuses('{"__metadata__":{"k":"' .. string.rep("x", 1 << 20) .. '"}}', 0,
      "__metadata__: more than 1048576 bytes of keys and values")
    -- many small pairs count the same as one big one
    local pairs_ = {}
    for i = 1, 40000 do pairs_[i] = ('"k%d":"%s"'):format(i, ("v"):rep(20)) end
    refuses('{"__metadata__":{' .. table.concat(pairs_, ",") .. '}}', 0,
      "__metadata__: more than 1048576 bytes of keys and values")
    write_file('{"__metadata__":{"k":"' .. string.rep("x", 1000) .. '"}}')
    local _, meta = dd.load(path)
    assert.equal(1000, #meta.k)
  end)
end)

describe("a hostile safetensors file: entries", function()
  it("need exactly dtype, shape and data_offsets, once each", function()
    refuses(one '"dtype":"U8","shape":[4]', 4, "tensor 'w': missing field 'data_offsets'")
    refuses(one '"dtype":"U8","shape":[4],"data_offsets":[0,4],"extra":1', 4,
      "tensor 'w': unknown field 'extra' (expected dtype, shape, data_offsets)")
    refuses(one '"dtype":"U8","dtype":"U8","shape":[4],"data_offsets":[0,4]', 4,
      "tensor 'w': field 'dtype' appears twice")
    refuses('{"w":[1,2]}', 0, "tensor 'w': expected an object with dtype, shape, data_offsets, got an array of 2")
  end)

  it("have unique names", function()
    refuses('{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"a":{"dtype":"U8","shape":[4],"data_offsets":[4,8]}}',
      8, "tensor 'a' appears twice in the header")
  end)
end)

describe("a hostile safetensors file: header text", function()
  it("is one JSON object of UTF-8 text and nothing else", function()
    refuses('{"w": ', 0, "header is not valid JSON (error near offset 5 of 6)")
    refuses('{} x', 0, "header has text after the JSON object at offset 3")
    refuses('[1,2]', 0, "header does not start with '{' (not a safetensors file?)")
    refuses('', 0, "header does not start with '{' (not a safetensors file?)")
    refuses('{"w\xff":1}', 0, "header is not valid UTF-8 (byte 0xff at header offset 3)")
    refuses('{"w\1":1}', 0, "header has control byte 0x01 inside a string at offset 3")
    refuses('{"w\\u0000x":1}', 0, "header has an escaped NUL (\\u0000) at offset 3")
  end)

  it("nests no deeper than name > field > array", function()
    refuses('{"w":{"dtype":"U8","shape":[[4]],"data_offsets":[0,4]}}', 4,
      "tensor 'w': shape: nested deeper than 3 levels at header offset 28 "
      .. '(expected {"name": {"shape": [..], ...}})')
    -- a deep nest is refused by the byte scan, before a recursive parser sees it
    refuses('{"w":' .. string.rep("[", 100000) .. string.rep("]", 100000) .. '}', 0,
      "tensor 'w': nested deeper than 3 levels at header offset 7 "
      .. '(expected {"name": {"shape": [..], ...}})')
  end)
end)

describe("a checkpoint never executes code", function()
  -- Every function that can run Lua source or bytecode, and os/io access,
  -- trips a flag if called while a checkpoint is read.
  local saved
  local function arm()
    saved = {load = load, loadstring = rawget(_G, "loadstring"), dofile = dofile, loadfile = loadfile,
             execute = os.execute, popen = io.popen}
    local function trap(name) return function() error("checkpoint reading called " .. name, 2) end end
    load, dofile, loadfile = trap("load"), trap("dofile"), trap("loadfile")
    rawset(_G, "loadstring", trap("loadstring"))
    os.execute, io.popen = trap("os.execute"), trap("io.popen")
  end
  local function disarm()
    load, dofile, loadfile = saved.load, saved.dofile, saved.loadfile
    rawset(_G, "loadstring", saved.loadstring)
    os.execute, io.popen = saved.execute, saved.popen
  end

  it("treats Lua source in metadata as data: loaded as strings, or refused as damaged JSON", function()
    local m = dd.nn.Linear{2, 2}
    local opt = dd.optim.SGD{m:parameters(), lr = 0.1}
    local good = dir .. "/good.safetensors"
    dd.nn.save(good, m, {optimizer = opt, meta = {note = "return os.exit(7)"}})
    local tensors, metadata = dd.load(good)
    -- the same file, its metadata replaced by code in every text field
    local code = "_G.PWNED = true; return {}"
    for _, key in ipairs{"meta", "optimizer"} do
      local md = {}
      for k, v in pairs(metadata) do md[k] = v end
      md[key] = code
      dd.save(path, tensors, md)
      arm()
      local ok, err = pcall(dd.nn.load, path, m, opt)
      disarm()
      assert.is_false(ok)
      local want = ("dd.nn.load: %s: the '%s' metadata is damaged (json.decode: "):format(path, key)
      assert.equal(want, tostring(err):sub(1, #want))
      assert.is_nil(rawget(_G, "PWNED"))
    end
    arm()
    local ok, meta = pcall(dd.nn.load, good, m, opt)
    disarm()
    assert.is_true(ok, tostring(meta))
    assert.equal("return os.exit(7)", meta.note)
  end)

  it("treats code in tensor names as a name", function()
    dd.save(path, {["model.weight'); os.exit(3) --"] = dd.ones(1)},
      {format = "deepdance-checkpoint", version = "1", model_keys = "1"})
    arm()
    local ok, err = pcall(dd.nn.load, path, dd.nn.Linear{1, 1, bias = false})
    disarm()
    assert.is_false(ok)
    assert.equal("dd.nn.load: " .. path .. " does not match the model: missing 'weight'; "
      .. "unexpected 'weight'); os.exit(3) --'", tostring(err))
  end)

  it("has no code path from file contents to load, dofile or require in the checkpoint module", function()
    local src = slurp("lua/deepdance/checkpoint.lua")
    for _, f in ipairs{"load", "loadstring", "loadfile", "dofile", "require", "os.execute", "io.popen"} do
      -- a call: name followed by ( or a string; not part of a longer name (dd.load, dd.nn.load)
      local pattern = "[^%w_%.:]" .. f:gsub("%.", "%%.") .. "%s*[%(\"'%[{]"
      assert.is_nil(src:find(pattern), "checkpoint.lua calls " .. f)
    end
  end)

  it("reports a hostile file through dd.nn.load with the checkpoint's path", function()
    write_file(one '"dtype":"F32","shape":[2],"data_offsets":[0,4]', 4)
    assert.equal("dd.nn.load: cannot read checkpoint: " .. path
      .. ": tensor 'w': data_offsets [0, 4] hold 4 bytes, shape (2) of F32 needs 8",
      error_of(dd.nn.load, path, dd.nn.Linear{1, 1}))
  end)
end)
