-- deepdance.dancer: a synthetic dancer for the default training video.
--
-- A 2-D skeleton (pelvis root; spine, neck, head; shoulders, elbows, wrists,
-- hands; hips, knees, ankles, feet) posed by a choreography declared here in
-- Lua: a library of moves, each a function of the beat, sequenced at random
-- per seed with smooth transitions, drawn as one black silhouette (tapered
-- capsules, a torso polygon, an ellipse head) over a bright, moving stage
-- backdrop with dd.draw. Every pixel of the backdrop has r + g + b >= 382 on
-- the 0..255 scale (the paper's rule calls r + g + b > 230 background), and
-- the dancer is pure black, so thresholding gives a clean black dancer on white.
--
--   local dancer = require "deepdance.dancer"
--   local video = dancer.video{seed = 7, width = 640, height = 360, fps = 30}
--   local frame = video:frame(k)          -- (3, H, W) in [0, 1], frame k = 0, 1, ...
--
-- Units: lengths in body heights (sole to top of head = 1), y up from the
-- floor, x to the right of the stage centre; angles in radians. One seed gives
-- one video: all random draws come from generators seeded from it (dancer.rng).
local M = {}

local pi, sin, cos, sqrt, abs, floor = math.pi, math.sin, math.cos, math.sqrt, math.abs, math.floor
local min, max, atan = math.min, math.max, math.atan

local function clamp(v, lo, hi) return v < lo and lo or (v > hi and hi or v) end
local function lerp(a, b, t) return a + (b - a) * t end
local function smooth(t) t = clamp(t, 0, 1) return t * t * (3 - 2 * t) end
-- 0 -> 1 -> 0 as t goes 0 -> 0.5 -> 1, zero outside.
local function arc(t) return (t > 0 and t < 1) and sin(pi * t) or 0 end
-- Knees give on the beat: depth at whole beats, 0 half-way between.
local function bounce(p, depth) return depth * (0.5 + 0.5 * cos(2 * pi * p)) end

--------------------------------------------------------------------------------
-- Random numbers: splitmix64 in Lua integers, independent of dd's global RNG so
-- that the video depends on its seed alone, whatever else the script draws.

local Rng = {}
Rng.__index = Rng

function M.rng(seed)
  if math.type(seed) ~= "integer" then
    error(("dancer.rng: seed must be an integer, got %s"):format(tostring(seed)), 2)
  end
  return setmetatable({state = seed}, Rng)
end

function Rng:next()
  self.state = self.state + 0x9E3779B97F4A7C15
  local z = self.state
  z = (z ~ (z >> 30)) * 0xBF58476D1CE4E5B9
  z = (z ~ (z >> 27)) * 0x94D049BB133111EB
  return z ~ (z >> 31)
end
-- uniform in [0, 1) with 53 bits
function Rng:uniform() return (self:next() >> 11) * 2.0 ^ -53 end
function Rng:range(a, b) return a + (b - a) * self:uniform() end
function Rng:below(n) return floor(self:uniform() * n) end
function Rng:sign() return self:uniform() < 0.5 and -1 or 1 end

--------------------------------------------------------------------------------
-- The skeleton: bone lengths and flesh radii in body heights.

M.body = {
  ankle_h = 0.045,               -- ankle joint above the sole
  thigh = 0.245, shin = 0.235,
  hip_half = 0.052,              -- hip joints either side of the pelvis root
  spine_low = 0.145, spine_high = 0.18, neck = 0.042, head_up = 0.062,
  head_rx = 0.052, head_ry = 0.066, head_depth = 0.06,
  shoulder_half = 0.105, shoulder_drop = 0.04,
  upper_arm = 0.165, forearm = 0.145, hand = 0.08,
  foot = 0.125, foot_turnout = 0.55,
  -- radii: {at the proximal end, at the distal end}
  r_upper_arm = {0.033, 0.025}, r_forearm = {0.026, 0.019}, r_hand = {0.021, 0.013},
  r_thigh = {0.06, 0.041}, r_shin = {0.04, 0.025}, r_foot = {0.028, 0.015},
  r_neck = {0.036, 0.031},
}
local B = M.body
local LEG = B.thigh + B.shin

-- A pose: flat numbers, so poses blend field by field. Feet and pelvis x are
-- stage positions; l* is the dancer's left, drawn on screen right when facing
-- the camera.
--   x        pelvis position        drop   pelvis lowered (knees bend)
--   jump     whole body airborne    lean   torso tilt, top towards +x
--   chest    extra tilt of the chest          tilt  hip line, +x hip up
--   head     head tilt              yaw    body turn (0 = facing the camera)
--   turnout  how far bent knees point sideways rather than at the camera
--   lfx, lfy left ankle x and lift above the floor (rfx, rfy: right)
--   ls, le, lh  left shoulder, elbow, wrist: shoulder 0 = arm down, pi/2 =
--            out to the side, pi = straight up; elbow and wrist bend the same
--            way (positive = further up/out)  (rs, re, rh: right)
M.pose_keys = {"x", "drop", "jump", "lean", "chest", "tilt", "head", "yaw", "turnout",
               "lfx", "lfy", "rfx", "rfy", "ls", "le", "lh", "rs", "re", "rh"}

function M.neutral()
  return {x = 0, drop = 0, jump = 0, lean = 0, chest = 0, tilt = 0, head = 0, yaw = 0, turnout = 0.45,
          lfx = 0.1, lfy = 0, rfx = -0.1, rfy = 0, ls = 0.12, le = 0.15, lh = 0, rs = 0.12, re = 0.15, rh = 0}
end

-- The same pose seen in a mirror: left and right swap, x and tilts negate.
function M.mirror(p)
  return {x = -p.x, drop = p.drop, jump = p.jump, lean = -p.lean, chest = -p.chest, tilt = -p.tilt,
          head = -p.head, yaw = -p.yaw, turnout = p.turnout,
          lfx = -p.rfx, lfy = p.rfy, rfx = -p.lfx, rfy = p.lfy,
          ls = p.rs, le = p.re, lh = p.rh, rs = p.ls, re = p.le, rh = p.lh}
end

local function wrap_angle(a) return a - 2 * pi * floor((a + pi) / (2 * pi)) end

-- a + (b - a) w field by field; yaw takes the short way round.
function M.blend(a, b, w)
  local out = {}
  for _, k in ipairs(M.pose_keys) do out[k] = a[k] + (b[k] - a[k]) * w end
  local ya, yb = wrap_angle(a.yaw), wrap_angle(b.yaw)
  if yb - ya > pi then yb = yb - 2 * pi elseif ya - yb > pi then yb = yb + 2 * pi end
  out.yaw = ya + (yb - ya) * w
  return out
end

-- Shoulder and elbow angles that put the wrist at (tx, ty) from the shoulder
-- (tx outwards, ty up); bend 1 puts the elbow out/up, -1 in/down.
function M.reach(tx, ty, bend)
  local a, b = B.upper_arm, B.forearm
  local d = clamp(sqrt(tx * tx + ty * ty), abs(a - b) + 1e-3, (a + b) * 0.999)
  local toward = atan(tx, -ty)
  local alpha = math.acos(clamp((a * a + d * d - b * b) / (2 * a * d), -1, 1))
  local beta = math.acos(clamp((a * a + b * b - d * d) / (2 * a * b), -1, 1))
  bend = bend or 1
  return toward + bend * alpha, -bend * (pi - beta)
end

-- Wrist targets of common hand positions, from the shoulder (outward, up).
local HAND_ON_HIP = {-0.005, -0.215}
local CLAP_FRONT = {-0.1, -0.12}

--------------------------------------------------------------------------------
-- Moves. Each is a function (p, a) -> pose of p, the beats since the move
-- began (it may run past `beats` during the blend into the next move), and a,
-- this performance's parameters (a.amp scales the motion). Moves are written
-- for one side and one direction; the sequencer mirrors them at random.

local moves = {}
M.moves = moves

local function step(p, t0, t1, x0, x1, h)
  local t = (p - t0) / (t1 - t0)
  return lerp(x0, x1, smooth(t)), h * arc(t)
end

-- Arm wave: a ripple running in at one hand, across the shoulders, out of the other.
moves.arm_wave = {beats = {4, 8}, fn = function(p, a)
  local n, A = M.neutral(), a.amp
  local ph = pi * p  -- one ripple per 2 beats
  n.drop = bounce(p, 0.025)
  n.lfx, n.rfx = 0.12, -0.12
  n.rh = 0.8 * A * sin(ph); n.re = 0.7 * A * sin(ph - 0.8); n.rs = 1.45 + 0.3 * A * sin(ph - 1.6)
  n.ls = 1.45 + 0.3 * A * sin(ph - 2.4); n.le = 0.7 * A * sin(ph - 3.2); n.lh = 0.8 * A * sin(ph - 4.0)
  n.chest = 0.06 * sin(ph - 2.0); n.head = 0.1 * sin(ph - 2.2); n.x = 0.02 * sin(ph - 2.0)
  return n
end}

-- Step-touch: step out to the side, close the other foot with a tap; clap on it.
moves.step_touch = {beats = {4, 8}, fn = function(p, a)
  local n = M.neutral()
  local q = p % 2
  local back = q >= 1
  local r = back and q - 1 or q
  -- weight moves from centre -0.09 to +0.09 in beat one (mirrored in beat two)
  local c0, c1 = -0.09, 0.09
  local lead, lead_lift = step(r, 0.0, 0.45, c0 + 0.05, c1 + 0.08, 0.06)  -- outer foot steps out
  local trail, trail_lift = step(r, 0.45, 0.95, c0 - 0.08, c1 - 0.05, 0.05) -- the other closes in
  n.x = lerp(c0, c1, smooth((r - 0.05) / 0.7)) * a.amp
  n.lfx, n.lfy, n.rfx, n.rfy = lead * a.amp, lead_lift, trail * a.amp, trail_lift
  n.lean = 0.06 * sin(pi * r)
  n.drop = bounce(p, 0.03)
  local clap = (0.5 + 0.5 * cos(2 * pi * (p - 0.97))) ^ 2
  local cs, ce = M.reach(CLAP_FRONT[1], CLAP_FRONT[2], 1)
  n.ls, n.le, n.lh = lerp(0.8, cs, clap), lerp(-0.4, ce, clap), lerp(0.3, -0.2, clap)
  n.rs, n.re, n.rh = n.ls, n.le, n.lh
  n.head = 0.08 * sin(pi * r)
  if back then n = M.mirror(n) end
  return n
end}

-- Squat (plie): knees out, arms rising to the sides as the body sinks.
moves.squat = {beats = {4, 8}, fn = function(p, a)
  local n = M.neutral()
  local d = 0.5 - 0.5 * cos(pi * p)  -- down on odd beats
  n.lfx, n.rfx = 0.2, -0.2
  n.drop = 0.16 * a.amp * d
  n.turnout = 0.55 + 0.6 * d
  n.ls = 0.35 + 1.25 * d; n.rs = n.ls
  n.le = 0.4 - 0.2 * d; n.re = n.le
  n.lh, n.rh = 0.3 * d, 0.3 * d
  n.head = 0.05 * sin(pi * p / 2)
  return n
end}

-- Side kicks, one leg then the other, leaning away for balance.
moves.kick = {beats = {4, 8}, fn = function(p, a)
  local n = M.neutral()
  local q = p % 2
  local k = q < 0.85 and smooth((q - 0.35) / 0.5) or 1 - smooth((q - 0.85) / 0.65)
  local prep = arc(q / 0.35)
  n.lfx, n.lfy = 0.1 + 0.3 * a.amp * k, 0.36 * a.amp * k
  n.rfx = -0.09
  n.drop = 0.03 + 0.04 * prep + 0.03 * k
  n.lean = -0.22 * k
  n.tilt = 0.05 * k
  n.ls, n.le, n.lh = 1.3 + 0.25 * k, 0.2, 0.1
  n.rs, n.re, n.rh = 1.2 + 0.35 * k, 0.3, 0.2
  n.head = -0.08 * k
  if floor(p / 2) % 2 == 1 then n = M.mirror(n) end
  return n
end}

-- A full turn on the spot: wind up, spin with the arms folded in, open out.
moves.spin = {beats = {4}, fn = function(p, a)
  local n = M.neutral()
  local q = p % 4
  local prep = arc(q)
  local turn = smooth((q - 1) / 2)
  local fold = smooth((q - 0.7) / 0.6) * (1 - smooth((q - 2.6) / 0.6))
  local open = arc((q - 2.6) / 1.4)
  n.yaw = 2 * pi * turn
  n.drop = 0.05 * prep + 0.03 * open
  n.lfx, n.rfx = lerp(0.11, 0.07, fold), lerp(-0.11, -0.07, fold)
  n.lfy, n.rfy = 0.02 * fold, 0.02 * fold  -- up on the toes while turning
  local fs, fe = M.reach(-0.09, -0.1, 1)
  n.ls = lerp(lerp(0.6, 1.5, prep), fs, fold) + 1.1 * open
  n.le = lerp(0.5, fe, fold) - 0.3 * open
  n.lh = 0.3 * open
  n.rs, n.re, n.rh = n.ls, n.le, n.lh
  n.rs = n.rs - 0.6 * prep  -- the wind-up is lopsided
  n.head = 0.1 * open
  return n
end}

-- Star jumps: sink, spring up with arms and legs spread, land soft.
moves.jump = {beats = {4}, fn = function(p, a)
  local n = M.neutral()
  local q = p % 2
  local prep = arc(q / 0.65)
  local air = arc((q - 0.6) / 0.8)
  local land = arc((q - 1.35) / 0.55)
  n.jump = 0.13 * a.amp * air
  n.drop = 0.11 * prep + 0.09 * land
  n.turnout = 0.6 + 0.4 * (prep + land)
  n.lfx, n.rfx = 0.1 + 0.13 * air, -0.1 - 0.13 * air
  n.lfy, n.rfy = 0.04 * air, 0.04 * air
  local up = smooth((q - 0.25) / 0.65) * (1 - smooth((q - 1.2) / 0.75))
  n.ls = lerp(0.25 - 0.15 * prep, 2.45, up); n.rs = n.ls
  n.le, n.re = 0.15, 0.15
  n.lh, n.rh = 0.3 * up, 0.3 * up
  n.head = 0
  return n
end}

-- Jumping jacks: hop out with arms overhead, hop in with arms down.
moves.jacks = {beats = {4, 8}, fn = function(p, a)
  local n = M.neutral()
  local r = p % 1
  local hop = arc((r - 0.1) / 0.5)
  local out = floor(p) % 2 == 0
  local t = smooth((r - 0.05) / 0.75)
  local w = out and t or 1 - t  -- 0 = feet in, arms down; 1 = feet out, arms up
  n.jump = 0.05 * a.amp * hop
  n.drop = 0.05 * arc((r - 0.6) / 0.4) + 0.02 * arc(r / 0.15)
  n.lfx, n.rfx = 0.07 + 0.15 * w, -0.07 - 0.15 * w
  n.lfy, n.rfy = 0.015 * hop, 0.015 * hop
  n.ls = lerp(0.2, 2.75, w); n.rs = n.ls
  n.le, n.re = 0.1 + 0.25 * w, 0.1 + 0.25 * w
  n.lh, n.rh = 0.2 * w, 0.2 * w
  return n
end}

-- Hip sway: the pelvis swings side to side, the torso answering it; arms in
-- a V overhead, or hands on hips.
moves.hip_sway = {beats = {4, 8}, fn = function(p, a)
  local n = M.neutral()
  local sw = sin(pi * p)
  n.lfx, n.rfx = 0.13, -0.13
  n.x = 0.075 * a.amp * sw
  n.tilt = 0.16 * sw
  n.lean = -0.1 * sw
  n.chest = -0.07 * sw
  n.head = 0.12 * sw
  n.drop = 0.02 + bounce(p, 0.015)
  if a.variant == 1 then
    n.ls, n.le, n.lh = 2.6 + 0.15 * sw, 0.3, 0.2
    n.rs, n.re, n.rh = 2.6 - 0.15 * sw, 0.3, 0.2
  else
    n.ls, n.le = M.reach(HAND_ON_HIP[1], HAND_ON_HIP[2], 1)
    n.rs, n.re = n.ls, n.le
    n.lh, n.rh = -0.5, -0.5
  end
  return n
end}

-- Disco point: up to one corner on one beat, down across the body on the
-- next, the other hand on the hip.
moves.disco = {beats = {4, 8}, fn = function(p, a)
  local n = M.neutral()
  local q = p % 2
  local k = q < 1 and smooth(q / 0.55) or 1 - smooth((q - 1) / 0.55)  -- 1 = pointing up
  local s = 2 * k - 1
  n.lfx, n.rfx = 0.15, -0.1
  n.lfy = 0.03 * arc((q % 1) / 0.3)
  n.ls = lerp(-0.3, 2.55, k); n.le = 0.05; n.lh = 0.1
  n.rs, n.re = M.reach(HAND_ON_HIP[1], HAND_ON_HIP[2], 1)
  n.rh = -0.5
  n.x = -0.035 * s
  n.tilt = -0.08 * s
  n.lean = 0.08 * s
  n.head = 0.12 * s
  n.drop = bounce(p, 0.025)
  return n
end}

-- Pull-downs: arms reach up, then pull down to the shoulders as a knee comes up.
moves.pulldown = {beats = {4, 8}, fn = function(p, a)
  local n = M.neutral()
  local r = (p % 2) / 2
  local k = 0.5 - 0.5 * cos(2 * pi * r)
  n.lfx, n.lfy = lerp(0.1, 0.06, k), 0.22 * a.amp * k
  n.rfx = -0.1
  n.drop = 0.03 * k + bounce(p, 0.02)
  n.turnout = 0.45 + 0.35 * k
  n.ls, n.le, n.lh = lerp(2.75, 0.45, k), lerp(0.3, 2.5, k), 0.2
  n.rs, n.re, n.rh = n.ls, n.le, n.lh
  n.lean = 0.05 * k
  n.chest = 0.05 * k
  if floor(p / 2) % 2 == 1 then n = M.mirror(n) end
  return n
end}

-- Side stretch: one arm sweeps up and over, the body bending with it.
moves.reach = {beats = {4, 8}, fn = function(p, a)
  local n = M.neutral()
  local r = (p % 2) / 2
  local k = 0.5 - 0.5 * cos(2 * pi * r)
  n.lfx, n.rfx = 0.16, -0.16
  n.drop = 0.03 + 0.02 * k
  n.ls, n.le, n.lh = 0.3 + 2.6 * a.amp * k, 0.3 + 0.05 * k, 0.2 * k
  -- the other hand goes to the hip as this one rises (so the sides can swap at k = 0)
  local hs, he = M.reach(HAND_ON_HIP[1], HAND_ON_HIP[2], 1)
  n.rs, n.re, n.rh = lerp(0.3, hs, k), lerp(0.3, he, k), -0.5 * k
  n.lean = -0.22 * k
  n.chest = -0.14 * k
  n.tilt = 0.06 * k
  n.x = 0.04 * k
  n.head = -0.15 * k
  if floor(p / 2) % 2 == 1 then n = M.mirror(n) end
  return n
end}

-- Travel: four side steps (out, close, out, close) across the stage, arms
-- swinging; a.dist is the distance covered. The one move that moves the dancer.
moves.travel = {beats = {4}, travels = true, fn = function(p, a)
  local n = M.neutral()
  p = min(p, 4)
  local D = a.dist
  local lx, rx, ly, ry = 0.1, -0.1, 0, 0
  for k = 0, 3 do
    local x, h = step(p, k + 0.05, k + 0.6, 0, D / 2, 0.07)
    if p < k + 0.05 then x, h = 0, 0 end
    if k % 2 == 0 then lx, ly = lx + x, ly + h else rx, ry = rx + x, ry + h end
  end
  n.lfx, n.lfy, n.rfx, n.rfy = lx, ly, rx, ry
  n.x = 0.5 * (lx + rx)
  n.drop = bounce(p, 0.03)
  local swing = 0.5 - 0.5 * cos(pi * p)
  n.ls, n.le, n.lh = 0.3 + 1.2 * swing, 0.4 + 0.8 * swing, 0.3 * swing
  n.rs, n.re, n.rh = 0.3 + 1.2 * swing, 0.4 + 0.8 * swing, 0.3 * swing
  n.lean = 0.06 * sin(pi * p)
  n.head = 0.1
  return n
end}

M.move_names = {"arm_wave", "step_touch", "squat", "kick", "spin", "jump", "jacks", "hip_sway", "disco",
                "pulldown", "reach", "travel"}

--------------------------------------------------------------------------------
-- Choreography: a random sequence of moves per seed, generated lazily and in
-- order (so frame k is the same however frames are visited), blended over
-- `blend` beats, the dancer staying within +-stage of the centre.

local Choreo = {}
Choreo.__index = Choreo

-- opts: seed (integer), stage (half-width in body heights the pelvis may use),
-- bpm (default: drawn in 100..130), blend (beats, default 1).
function M.choreography(opts)
  local rng = M.rng(opts.seed)
  local self = setmetatable({rng = rng, segments = {}, stage = opts.stage or 0.6,
                             blend = opts.blend or 1.0}, Choreo)
  self.bpm = opts.bpm or rng:range(100, 130)
  return self
end

function Choreo:add_segment()
  local rng, segs = self.rng, self.segments
  local last = segs[#segs]
  local name
  repeat
    -- travel is drawn more often: it is what carries the dancer across the stage
    local i = rng:below(#M.move_names + 2) + 1
    name = M.move_names[min(i, #M.move_names)]
  until not last or name ~= last.name
  local move = moves[name]
  local seg = {name = name, move = move, start = last and last.start + last.beats or 0,
               beats = move.beats[rng:below(#move.beats) + 1], x = last and last.x_end or 0,
               a = {amp = rng:range(0.85, 1.15), variant = rng:below(2) + 1, dist = rng:range(0.3, 0.55)},
               mirror = rng:uniform() < 0.5}
  if move.travels then
    local dir = seg.mirror and -1 or 1
    if abs(seg.x + dir * seg.a.dist) > self.stage then dir = -dir end
    seg.a.dist = min(seg.a.dist, max(0, self.stage - dir * seg.x))
    seg.mirror = dir < 0
    seg.x_end = seg.x + dir * seg.a.dist
  else
    seg.x_end = seg.x
  end
  segs[#segs + 1] = seg
end

local function segment_pose(seg, p)
  local pose = seg.move.fn(p, seg.a)
  if seg.mirror then pose = M.mirror(pose) end
  pose.x, pose.lfx, pose.rfx = pose.x + seg.x, pose.lfx + seg.x, pose.rfx + seg.x
  return pose
end

-- The segment index playing at beat b.
function Choreo:segment_at(b)
  local segs = self.segments
  while #segs == 0 or segs[#segs].start + segs[#segs].beats <= b do self:add_segment() end
  local lo, hi = 1, #segs
  while lo < hi do
    local mid = (lo + hi + 1) // 2
    if segs[mid].start <= b then lo = mid else hi = mid - 1 end
  end
  return lo
end

function Choreo:beat(t) return t * self.bpm / 60 end

-- The pose at time t (seconds).
function Choreo:pose(t)
  local b = self:beat(t)
  local i = self:segment_at(b)
  local seg = self.segments[i]
  local pose = segment_pose(seg, b - seg.start)
  local into = b - seg.start
  if i > 1 and into < self.blend then
    local prev = self.segments[i - 1]
    local from = segment_pose(prev, b - prev.start)
    local w = 0.5 - 0.5 * cos(pi * into / self.blend)
    local out = M.blend(from, pose, w)
    -- a foot that changes place in the blend is lifted, not slid
    local lift = 0.35 * arc(w)
    out.lfy = out.lfy + min(0.08, lift * abs(pose.lfx - from.lfx))
    out.rfy = out.rfy + min(0.08, lift * abs(pose.rfx - from.rfx))
    pose = out
  end
  return pose, seg.name
end

--------------------------------------------------------------------------------
-- Kinematics: pose -> joint positions. Points are {u, y, v}: u across the
-- body (x before turning), y up, v towards the camera; project() turns them
-- by yaw about the pelvis' vertical axis and drops v.

local function up(theta) return sin(theta), cos(theta) end  -- unit vector tilted theta towards +x
local function down(phi) return sin(phi), -cos(phi) end     -- pointing down, turned phi towards +x

-- 3-D-ish knee: the hip-ankle line bends at the knee towards the camera and,
-- by turnout, sideways (side = +1 left leg, -1 right).
local function leg(hip, ankle, side, turnout)
  local dx, dy = ankle[1] - hip[1], ankle[2] - hip[2]
  local d = sqrt(dx * dx + dy * dy)
  local a, b = B.thigh, B.shin
  local dc = clamp(d, abs(a - b) + 1e-3, (a + b) * 0.999)
  local ux, uy = dx / max(d, 1e-6), dy / max(d, 1e-6)
  if d < 1e-6 then ux, uy = 0, -1 end
  local ax, ay = hip[1] + ux * dc, hip[2] + uy * dc  -- ankle where the leg can reach
  local along = (a * a - b * b + dc * dc) / (2 * dc)
  local h = sqrt(max(a * a - along * along, 0))
  local px, py = -uy * side, ux * side  -- in-plane perpendicular, outwards
  local knee = {hip[1] + ux * along + px * h * sin(turnout), hip[2] + uy * along + py * h * sin(turnout),
                h * cos(turnout)}
  return knee, {ax, ay, 0}
end

-- Foot: flat on the floor, turned out, or pointed along the shin when lifted.
local function foot(knee, ankle, side, lift)
  local f = B.foot
  local sx, sy, sv = ankle[1] - knee[1], ankle[2] - knee[2], ankle[3] - knee[3]
  local sl = sqrt(sx * sx + sy * sy + sv * sv)
  sx, sy, sv = sx / sl, sy / sl, sv / sl
  local ft = B.foot_turnout
  local flat = {side * sin(ft) * f * 0.8, -(B.ankle_h - B.r_foot[2]), cos(ft) * f * 0.8}
  local point = {sx * f * 0.75 + side * 0.02, sy * f * 0.75, sv * f * 0.75 + 0.04}
  local w = smooth(lift / 0.08)
  local heel = {ankle[1], ankle[2] - 0.012, ankle[3]}
  local toe = {ankle[1] + lerp(flat[1], point[1], w), ankle[2] + lerp(flat[2], point[2], w),
               ankle[3] + lerp(flat[3], point[3], w)}
  return heel, toe
end

local function arm(shoulder, frame, side, s, e, h)
  local phi = frame + side * s
  local x, y = down(phi)
  local elbow = {shoulder[1] + x * B.upper_arm, shoulder[2] + y * B.upper_arm, 0}
  phi = phi + side * e
  x, y = down(phi)
  local wrist = {elbow[1] + x * B.forearm, elbow[2] + y * B.forearm, 0}
  phi = phi + side * h
  x, y = down(phi)
  local tip = {wrist[1] + x * B.hand, wrist[2] + y * B.hand, 0}
  return elbow, wrist, tip
end

-- Joint positions of a pose (a table of {u, y, v} points and a few angles).
function M.solve(pose)
  local J = {}
  local ct, st = cos(pose.tilt), sin(pose.tilt)
  local lfoot = {pose.lfx, B.ankle_h + pose.lfy + pose.jump}
  local rfoot = {pose.rfx, B.ankle_h + pose.rfy + pose.jump}
  -- pelvis height: standing, lowered by drop, never so high a foot on the
  -- floor could not be reached (knees keep a slight bend)
  local py = B.ankle_h + LEG * 0.985 - pose.drop + pose.jump
  local reach = LEG * 0.985
  for side, f in pairs{[1] = lfoot, [-1] = rfoot} do
    local hx, hy = pose.x + side * B.hip_half * ct, side * B.hip_half * st
    local dx = f[1] - hx
    if abs(dx) < reach then py = min(py, f[2] + sqrt(reach * reach - dx * dx) - hy) end
  end
  J.pelvis = {pose.x, py, 0}
  J.lhip = {pose.x + B.hip_half * ct, py + B.hip_half * st, 0}
  J.rhip = {pose.x - B.hip_half * ct, py - B.hip_half * st, 0}
  J.lknee, J.lankle = leg(J.lhip, lfoot, 1, pose.turnout)
  J.rknee, J.rankle = leg(J.rhip, rfoot, -1, pose.turnout)
  J.lheel, J.ltoe = foot(J.lknee, J.lankle, 1, pose.lfy)
  J.rheel, J.rtoe = foot(J.rknee, J.rankle, -1, pose.rfy)
  -- spine in two parts, then neck and head
  local ux, uy = up(pose.lean)
  J.waist = {pose.x + ux * B.spine_low, py + uy * B.spine_low, 0}
  local chest = pose.lean + pose.chest
  ux, uy = up(chest)
  J.neck = {J.waist[1] + ux * B.spine_high, J.waist[2] + uy * B.spine_high, 0}
  local head = chest + pose.head
  local hx, hy = up(chest + 0.5 * pose.head)
  J.head_base = {J.neck[1] + hx * B.neck, J.neck[2] + hy * B.neck, 0}
  hx, hy = up(head)
  J.head = {J.head_base[1] + hx * B.head_up, J.head_base[2] + hy * B.head_up, 0}
  -- shoulders hang from the neck base, across the chest's line
  local cc, cs = cos(chest), sin(chest)
  for side, name in pairs{[1] = "l", [-1] = "r"} do
    local sx, sy = side * B.shoulder_half, -B.shoulder_drop
    J[name .. "shoulder"] = {J.neck[1] + sx * cc + sy * cs, J.neck[2] - sx * cs + sy * cc, 0}
  end
  J.lelbow, J.lwrist, J.lhand = arm(J.lshoulder, -chest, 1, pose.ls, pose.le, pose.lh)
  J.relbow, J.rwrist, J.rhand = arm(J.rshoulder, -chest, -1, pose.rs, pose.re, pose.rh)
  J.angles = {lean = pose.lean, chest = chest, head = head, tilt = pose.tilt, yaw = pose.yaw}
  return J
end

--------------------------------------------------------------------------------
-- Drawing: joints -> a list of shapes for dd.draw.shapes, in pixels.
-- view = {scale = pixels per body height, cx = pixel x of the stage centre,
-- ground = pixel y of the floor}.

-- Torso cross-sections: {where, half-width, half-depth}; where is a point on
-- the spine (see torso_levels), so the outline follows the lean and chest.
local function torso_levels(J)
  local A = J.angles
  local function along(p0, p1, t) return {lerp(p0[1], p1[1], t), lerp(p0[2], p1[2], t)} end
  return {
    {along(J.waist, J.neck, 1.0), A.chest, 0.035, 0.04},   -- base of the neck
    {along(J.waist, J.neck, 0.95), A.chest, 0.11, 0.065},  -- top of the shoulders
    {along(J.waist, J.neck, 0.72), A.chest, 0.118, 0.075}, -- armpits
    {along(J.waist, J.neck, 0.38), A.chest, 0.096, 0.07},  -- ribs
    {along(J.pelvis, J.waist, 1.0), A.lean, 0.082, 0.065}, -- waist
    {along(J.pelvis, J.waist, 0.35), -A.tilt, 0.1, 0.075},  -- hips
    {along(J.pelvis, J.waist, -0.3), -A.tilt, 0.08, 0.07},  -- crotch
  }
end

-- Near-to-far order of limbs does not matter here: the silhouette is one
-- union painted once. Depth still shapes it: yaw turns each point about the
-- pelvis' vertical axis, so a turning dancer narrows and widens.
function M.shapes(J, view)
  local s, cx, gy = view.scale, view.cx, view.ground
  local yaw = J.angles.yaw
  local cy_, sy_ = cos(yaw), sin(yaw)
  local axis = J.pelvis[1]
  local function X(p) return cx + s * (axis + (p[1] - axis) * cy_ + (p[3] or 0) * sy_) end
  local function Y(p) return gy - s * p[2] end
  local list = {}
  local function capsule(a, b, r)
    list[#list + 1] = {"capsule", X(a), Y(a), X(b), Y(b), r[1] * s, r[2] * s}
  end
  -- torso outline: right side down, left side up
  local left, right = {}, {}
  for _, L in ipairs(torso_levels(J)) do
    local c, ang, w, d = L[1], L[2], L[3], L[4]
    local half = sqrt((w * cy_) ^ 2 + (d * sy_) ^ 2)
    local px, py = cos(ang) * half, -sin(ang) * half  -- across the spine at angle ang
    local mx = cx + s * (axis + (c[1] - axis) * cy_)
    right[#right + 1] = {mx + s * px, gy - s * (c[2] + py)}
    left[#left + 1] = {mx - s * px, gy - s * (c[2] - py)}
  end
  local poly = {}
  for i = 1, #right do poly[#poly + 1] = right[i][1]; poly[#poly + 1] = right[i][2] end
  for i = #left, 1, -1 do poly[#poly + 1] = left[i][1]; poly[#poly + 1] = left[i][2] end
  list[#list + 1] = {"polygon", poly}
  -- neck and head
  capsule(J.neck, J.head_base, B.r_neck)
  local hrx = sqrt((B.head_rx * cy_) ^ 2 + (B.head_depth * sy_) ^ 2)
  list[#list + 1] = {"ellipse", X(J.head), Y(J.head), hrx * s, B.head_ry * s, J.angles.head}
  for _, side in ipairs{"l", "r"} do
    capsule(J[side .. "hip"], J[side .. "knee"], B.r_thigh)
    capsule(J[side .. "knee"], J[side .. "ankle"], B.r_shin)
    capsule(J[side .. "heel"], J[side .. "toe"], B.r_foot)
    capsule(J[side .. "shoulder"], J[side .. "elbow"], B.r_upper_arm)
    capsule(J[side .. "elbow"], J[side .. "wrist"], B.r_forearm)
    capsule(J[side .. "wrist"], J[side .. "hand"], B.r_hand)
  end
  return list
end

-- Pixel bounding box {x0, y0, x1, y1} of a shape list (edges included).
function M.bounds(list)
  local x0, y0, x1, y1 = math.huge, math.huge, -math.huge, -math.huge
  local function add(x, y, r)
    x0, x1, y0, y1 = min(x0, x - r), max(x1, x + r), min(y0, y - r), max(y1, y + r)
  end
  for _, sh in ipairs(list) do
    local k = sh[1]
    if k == "capsule" then add(sh[2], sh[3], sh[6]); add(sh[4], sh[5], sh[7])
    elseif k == "ellipse" then add(sh[2], sh[3], max(sh[4], sh[5]))
    elseif k == "circle" then add(sh[2], sh[3], sh[4])
    elseif k == "polygon" then
      for i = 1, #sh[2], 2 do add(sh[2][i], sh[2][i + 1], 0) end
    end
  end
  return {x0, y0, x1, y1}
end

--------------------------------------------------------------------------------
-- The stage: a bright backdrop whose colours drift, spotlights wandering over
-- it and beams sweeping from above. Colours are HSV with value 1 and
-- saturation <= 0.75, so r + g + b >= 1.5 everywhere before the lights, and
-- lights (screen blend) and the floor band (a mix towards white) only brighten.

local function hsv(h, s, v)
  h = (h % 1) * 6
  local i = floor(h)
  local f = h - i
  local p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
  if i == 0 then return {v, t, p} elseif i == 1 then return {q, v, p} elseif i == 2 then return {p, v, t}
  elseif i == 3 then return {p, q, v} elseif i == 4 then return {t, p, v} else return {v, p, q} end
end

local function backdrop_params(seed)
  local rng = M.rng(seed ~ 0x5DEECE66D)
  local P = {hue = rng:uniform(), hue_speed = rng:range(0.01, 0.03) * rng:sign(), spread = rng:range(0.2, 0.45),
             sat_top = rng:range(0.5, 0.75), sat_bottom = rng:range(0.4, 0.7), glows = {}, beams = {}}
  for i = 1, 3 do
    P.glows[i] = {fx = rng:range(0.05, 0.2), fy = rng:range(0.05, 0.2), px = rng:range(0, 2 * pi),
                  py = rng:range(0, 2 * pi), hue = rng:uniform(), r = rng:range(0.25, 0.45)}
  end
  for i = 1, 4 do
    P.beams[i] = {x = (i - 0.5) / 4 + rng:range(-0.08, 0.08), speed = rng:range(0.25, 0.7) * rng:sign(),
                  phase = rng:range(0, 2 * pi), swing = rng:range(0.35, 0.6), spread = rng:range(0.06, 0.13),
                  hue = rng:uniform(), intensity = rng:range(0.35, 0.6)}
  end
  return P
end

local function draw_backdrop(canvas, P, t, W, H, ground)
  local draw = dd.draw
  local hue = P.hue + P.hue_speed * t
  draw.linear_gradient(canvas, 0, 0, 0, H, hsv(hue, P.sat_top, 1), hsv(hue + P.spread, P.sat_bottom, 1))
  for _, g in ipairs(P.glows) do
    local gx = W * (0.5 + 0.4 * sin(2 * pi * g.fx * t + g.px))
    local gy = H * (0.4 + 0.3 * sin(2 * pi * g.fy * t + g.py))
    draw.glow(canvas, gx, gy, g.r * W, hsv(g.hue + 0.5 * hue, 0.6, 1), 0.55)
  end
  for _, b in ipairs(P.beams) do
    local angle = pi / 2 + b.swing * sin(b.speed * t + b.phase)
    local pulse = 0.75 + 0.25 * sin(1.7 * b.speed * t + 2 * b.phase)
    draw.beam(canvas, W * b.x, -0.05 * H, angle, b.spread, hsv(b.hue + 0.3 * hue, 0.5, 1),
              b.intensity * pulse, 0.5)
  end
  -- the floor: a lighter band below the dancer's feet
  draw.polygon(canvas, {0, ground - 0.01 * H, W, ground - 0.01 * H, W, H, 0, H}, {1, 1, 1, 0.35})
end

--------------------------------------------------------------------------------
-- The video: backdrop + dancer, frame by frame.

local Video = {}
Video.__index = Video

-- opts: seed (integer), width, height, fps, and optionally bpm and height_frac
-- (the dancer's standing height as a fraction of the frame height, 0.7).
function M.video(opts)
  local known = {seed = true, width = true, height = true, fps = true, bpm = true, height_frac = true}
  for k in pairs(opts) do
    if not known[k] then
      error(("dancer.video: unknown option '%s' (known: seed, width, height, fps, bpm, height_frac)")
        :format(tostring(k)), 2)
    end
  end
  if math.type(opts.seed) ~= "integer" then
    error(("dancer.video: seed must be an integer, got %s"):format(tostring(opts.seed)), 2)
  end
  local W, H = opts.width or 640, opts.height or 360
  if math.type(W) ~= "integer" or math.type(H) ~= "integer" or W < 16 or H < 16 then
    error(("dancer.video: width and height must be integers >= 16, got %s x %s"):format(tostring(W), tostring(H)), 2)
  end
  local fps = opts.fps or 30
  if type(fps) ~= "number" or not (fps > 0) then
    error(("dancer.video: fps must be a positive number, got %s"):format(tostring(fps)), 2)
  end
  local frac = opts.height_frac or 0.7
  -- in a narrow (portrait) frame the dancer shrinks so that arms out still fit
  local scale = min(frac * H, 0.8 * W / 1.12)
  local self = setmetatable({width = W, height = H, fps = fps, seed = opts.seed,
                             view = {scale = scale, cx = W / 2, ground = 0.95 * H},
                             backdrop = backdrop_params(opts.seed)}, Video)
  -- the pelvis may wander while the widest pose (a kick, arms out: about 0.55
  -- body heights either side) stays inside the frame
  local stage = max(0, (W / 2 - 0.03 * W) / scale - 0.56)
  self.choreo = M.choreography{seed = opts.seed, stage = stage, bpm = opts.bpm}
  return self
end

function Video:pose(t) return self.choreo:pose(t) end

function Video:shapes(t)
  return M.shapes(M.solve(self.choreo:pose(t)), self.view)
end

-- Draws frame k (0-based) into canvas, a (3, H, W) tensor; with
-- {dancer = false} only the backdrop.
function Video:render(canvas, k, opts)
  local t = k / self.fps
  draw_backdrop(canvas, self.backdrop, t, self.width, self.height, self.view.ground)
  if not (opts and opts.dancer == false) then
    dd.draw.shapes(canvas, self:shapes(t), {0, 0, 0})
  end
  return canvas
end

function Video:frame(k, opts)
  return self:render(dd.zeros(3, self.height, self.width), k, opts)
end

return M
