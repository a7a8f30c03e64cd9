/* raster.h: a small antialiased 2-D rasterizer in plain C (no Lua), for
 * synthetic video: filled shapes for a dancer's silhouette, gradients and
 * soft stage lights for the backdrop.
 *
 * A canvas is (3, H, W) planar float RGB, values in [0, 1], row 0 at the top.
 * Coordinates are in pixels: the pixel in column x, row y covers the square
 * [x, x+1) x [y, y+1), so its centre is (x + 0.5, y + 0.5). Angles are in
 * radians, measured from the +x axis towards +y (clockwise on screen).
 *
 * Shapes are antialiased by signed distance: a pixel whose centre lies at
 * distance d outside the edge (negative inside) gets coverage
 * clamp(0.5 - d, 0, 1), the exact area for a straight edge along a pixel row.
 * A list of shapes is painted as one union (coverage = max over the shapes)
 * and composited once, so touching limbs leave no seams. Every function only
 * visits the pixels of its clipped bounding box; nothing here allocates. */
#ifndef DD_RASTER_H
#define DD_RASTER_H

#include <stddef.h>

typedef struct RasterCanvas {
    float *data;    /* (3, height, width), contiguous */
    int height, width;
} RasterCanvas;

typedef enum ShapeKind {
    SHAPE_CIRCLE,   /* p = cx, cy, r */
    SHAPE_ELLIPSE,  /* p = cx, cy, rx, ry, angle */
    SHAPE_CAPSULE,  /* p = x1, y1, x2, y2, r1, r2: a segment with radius r1 at one end, r2 at
                       the other (a tapered limb); the hull of the two end discs */
    SHAPE_POLYGON,  /* xy[2*n]: a simple (not self-intersecting) polygon, either winding */
} ShapeKind;

typedef struct Shape {
    ShapeKind kind;
    float p[6];
    const float *xy;  /* SHAPE_POLYGON only: n vertices, x then y; not owned */
    int n;
} Shape;

/* A pixel rectangle [x0, x1) x [y0, y1); empty when x1 <= x0 or y1 <= y0. */
typedef struct RasterRect {
    int x0, y0, x1, y1;
} RasterRect;

/* The pixels any shape of the list can touch, clipped to a height x width canvas. */
RasterRect raster_shapes_bounds(const Shape *shapes, int n, int height, int width);

/* Paints the union of the shapes with colour rgb at opacity alpha (0..1):
 * pixel = pixel * (1 - a) + rgb * a, a = alpha * coverage. coverage is scratch
 * of at least (r.x1 - r.x0) * (r.y1 - r.y0) floats, r = raster_shapes_bounds. */
void raster_shapes_fill(RasterCanvas *c, const Shape *shapes, int n, const float rgb[3], float alpha,
                        float *coverage);

/* Signed distance in pixels from (px, py) to the shape's edge (negative inside). */
float shape_distance(const Shape *s, float px, float py);

/* Backdrops. These replace every pixel. */
void raster_fill(RasterCanvas *c, const float rgb[3]);
/* Colour c0 at (x0, y0) blending to c1 at (x1, y1) along that axis; clamped beyond. */
void raster_linear_gradient(RasterCanvas *c, float x0, float y0, float x1, float y1, const float c0[3],
                            const float c1[3]);
/* c_inner at (cx, cy) blending to c_outer at distance radius and beyond. */
void raster_radial_gradient(RasterCanvas *c, float cx, float cy, float radius, const float c_inner[3],
                            const float c_outer[3]);

/* Lights. These "screen" blend, pixel = 1 - (1 - pixel)(1 - rgb * k), with k in
 * [0, intensity]: they only brighten and never exceed 1, so a backdrop stays at
 * least as bright as it was. */
/* A soft round light: k = intensity * (1 - (d / radius)^2)^2 inside radius. */
void raster_glow(RasterCanvas *c, float cx, float cy, float radius, const float rgb[3], float intensity);
/* A beam from (x, y) along angle, of half-angle spread (0 < spread < pi/2):
 * k = intensity inside the wedge, fading to 0 across its outer `softness`
 * fraction (0..1) and dimming gently with distance from the source. */
void raster_beam(RasterCanvas *c, float x, float y, float angle, float spread, const float rgb[3],
                 float intensity, float softness);

#endif
