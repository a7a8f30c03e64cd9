-- fuzz_regressions_spec.lua: the inputs the fuzzers found (fuzz/regressions/
-- <harness>/), replayed through the Lua API, so they stay fixed even where
-- clang is missing and tests/fuzz_smoke.sh skips. Each must give a clean Lua
-- error (or load) in bounded time; the PNG one must also not reserve the
-- memory it declares.
-- Run from the repo root:
--   ./deepdance /usr/bin/busted -o TAP tests/lua/fuzz_regressions_spec.lua

local helpers = dofile("tests/lua/support/helpers.lua")
local quote = helpers.quote

local function files(dir)
  local p = assert(io.popen("ls " .. quote(dir) .. " 2>/dev/null"))
  local out = {}
  for name in p:lines() do out[#out + 1] = dir .. "/" .. name end
  p:close()
  return out
end

-- The loader each harness stands for, as a script calls it.
local LOADERS = {
  safetensors = function(path) return dd.load(path) end,
  png = function(path) return dd.image.load(path) end,
  -- in a child process with a time limit: a regression here was a hang
  video = function(path)
    -- read() goes on after a frame that fails to convert, as a script
    -- catching errors would (the freed-scaler regression needs a next frame)
    local code = ("local v = dd.video.open(%q); for i = 1, 50 do local ok, f = pcall(v.read, v); "
      .. "if ok and not f then break end end; v:close(); "
      .. "v = dd.video.open(%q); for _ in v:frames() do end; v:close(); "
      .. "v = dd.video.open(%q); for _ in v:frames{fps = 3} do end"):format(path, path, path)
    local p = assert(io.popen("timeout -s KILL 60 ./deepdance -e " .. quote(code) .. " 2>&1; echo \"exit $?\""))
    local out = p:read("a")
    p:close()
    local status = tonumber(out:match("exit (%d+)%s*$"))
    assert(status ~= 137, path .. ": still decoding after 60 s (killed)")
    if status ~= 0 then error(out:gsub("%s*exit %d+%s*$", ""), 0) end
  end,
}

describe("fuzz regressions", function()
  for _, harness in ipairs{"safetensors", "png", "video"} do
    local load = LOADERS[harness]
    it("replay through the Lua API with a clean result: " .. harness, function()
      for _, path in ipairs(files("fuzz/regressions/" .. harness)) do
        local ok, err = pcall(load, path)
        if not ok then
          assert.equal("string", type(err))
          assert.truthy(err:find(path, 1, true), ("%s: the error does not name the file: %s"):format(path, err))
        end
      end
    end)
  end

  it("a PNG declaring a 2 GB eXIf chunk costs no 2 GB allocation (virtual peak of a fresh process)", function()
    -- The process's virtual-memory peak after loading a file, in a fresh
    -- deepdance: libpng's old allocation reserved 2 GB without touching it,
    -- which only VmPeak shows.
    local function peak_kb(path)
      local code = ("pcall(dd.image.load, %q); for l in io.lines('/proc/self/status') do "
        .. "local k = l:match('^VmPeak:%%s*(%%d+)'); if k then print(k) end end"):format(path)
      local p = assert(io.popen("./deepdance -e " .. quote(code) .. " 2>&1"))
      local out = p:read("a")
      p:close()
      return assert(tonumber(out:match("(%d+)")), out)
    end
    local base = peak_kb("fuzz/corpus/png/grey8.png")
    local hostile = peak_kb("fuzz/regressions/png/exif_2gb_chunk.png")
    assert.is_true(hostile - base < 256 * 1024,
      ("VmPeak %d kB against %d kB for a small valid PNG"):format(hostile, base))
    local ok, err = pcall(dd.image.load, "fuzz/regressions/png/exif_2gb_chunk.png")
    assert.is_false(ok)
    assert.equal("image.load: 'fuzz/regressions/png/exif_2gb_chunk.png': file is cut short (unexpected end of file)", err)
  end)
end)
