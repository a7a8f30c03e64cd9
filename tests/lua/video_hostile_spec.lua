-- video_hostile_spec.lua: video files from strangers. dd.video.open reads the
-- file it is given and nothing else: FFmpeg's playlist and list formats (HLS,
-- concat), which open files named inside them, are refused with a message
-- naming the file. Damaged files give errors that name the file.
-- Run from the repo root:
--   ./deepdance /usr/bin/busted -o TAP tests/lua/video_hostile_spec.lua

local helpers = dofile("tests/lua/support/helpers.lua")
local error_of, spit, slurp, quote = helpers.error_of, helpers.spit, helpers.slurp, helpers.quote

local SEED_CLIP = "fuzz/corpus/video/h264.ts"   -- a 16x16, 5-frame clip (fuzz/make_corpus.sh)

local dir
before_each(function()
  dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -p " .. quote(dir .. "/uploads")))
  -- a "private" video next to the uploads, which no uploaded file may pull in
  spit(dir .. "/private.ts", slurp(SEED_CLIP))
  spit(dir .. "/uploads/neighbour.ts", slurp(SEED_CLIP))
end)
after_each(function() os.execute("rm -rf " .. quote(dir)) end)

describe("dd.video.open on a file from a stranger", function()
  it("refuses an HLS playlist posing as a video, whatever its name", function()
    local path = dir .. "/uploads/clip.mp4"
    spit(path, "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1.0,\n" .. dir .. "/private.ts\n#EXT-X-ENDLIST\n")
    assert.equal("dd.video.open: " .. path .. ": cannot open: it is a playlist or list naming another file ('"
      .. dir .. "/private.ts'); only the file itself is read", error_of(dd.video.open, path))
  end)

  it("refuses an HLS playlist naming a file beside it", function()
    local path = dir .. "/uploads/clip.m3u8"
    spit(path, "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1.0,\nneighbour.ts\n#EXT-X-ENDLIST\n")
    local err = error_of(dd.video.open, path)
    assert.equal("dd.video.open: " .. path .. ": cannot open: it is a playlist or list naming another file ('"
      .. dir .. "/uploads/neighbour.ts'); only the file itself is read", err)
  end)

  it("refuses a concat list, with relative or escaping names", function()
    local path = dir .. "/uploads/list.mp4"
    spit(path, "ffconcat version 1.0\nfile neighbour.ts\n")
    assert.equal("dd.video.open: " .. path .. ": cannot open: it is a list of other files (FFmpeg's 'concat' "
      .. "format); only the file itself is read", error_of(dd.video.open, path))
    spit(path, "ffconcat version 1.0\nfile ../private.ts\n")
    local err = error_of(dd.video.open, path)
    assert.truthy(err:find("dd.video.open: " .. path .. ": cannot open: ", 1, true), err)
  end)

  it("still opens the real thing, and a PNG as a one-frame video", function()
    local v = dd.video.open(dir .. "/private.ts")
    assert.equal(16, v.width)
    local frame = v:read()
    assert.same({3, 16, 16}, frame:shape())
    v:close()
    local p = dd.video.open("fuzz/corpus/png/grey8.png")
    assert.same(3, #p:read():shape())
    p:close()
  end)

  it("names the file when it is truncated, empty or not a video", function()
    local clip = slurp(SEED_CLIP)
    local cases = {
      {"empty.mp4", ""},
      {"text.mp4", "hello, this is not a video\n"},
      {"cut.ts", clip:sub(1, 400)},
    }
    for _, c in ipairs(cases) do
      local path = dir .. "/" .. c[1]
      spit(path, c[2])
      local ok, err = pcall(function()
        local v = dd.video.open(path)
        for _ in v:frames() do end
        v:close()
      end)
      if not ok then
        assert.truthy(tostring(err):find(path, 1, true), err)
      end
    end
  end)
end)
