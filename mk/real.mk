# mk/real.mk: the pipeline on real footage (issue 5: a real static-camera
# clip with --background median). No dance video can be downloaded here; the
# clip is OpenCV's vtest.avi (people walking before a fixed camera, 79.5 s),
# extracted from Debian's opencv-doc by experiments/fetch_real_clip.sh.
#   make demo-real    fetch the clip, then the demo preset on it -> runs/real
# tests/real_clip.sh runs the smoke preset on it in `make test`.

REAL_CLIP = data/real/vtest.avi

.PHONY: demo-real

$(REAL_CLIP):
	experiments/fetch_real_clip.sh $@

demo-real: deps $(REAL_CLIP)
	@$(MAKE) --no-print-directory all
	./deepdance experiments/deep_dance.lua --preset demo --video $(REAL_CLIP) --background median --out runs/real
