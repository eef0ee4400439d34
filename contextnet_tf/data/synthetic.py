"""A synthetic city: street scenes drawn with OpenCV and written in the Cityscapes layout with label ids.

Each scene has a horizon and a vanishing point; a road in perspective with lane markings and car shadows, sidewalks,
terrain, building facades with windows, walls, fences, trees and hedges, poles with traffic signs and lights, cars,
trucks, buses, trams, motorcycles, bicycles with riders and pedestrians, all scaled by their distance, under a random
sky and lighting (global gain, colour cast, a brightness gradient, sensor noise, slight blur). Everything is drawn in
back-to-front order into the image and, with the same geometry, into the label-id map.

It is learnable (context, texture and shape separate the classes) but not trivial: road, sidewalk, wall, poles,
buildings and grey cars share greys; vegetation and terrain share greens; pedestrians, signs and poles far away are a
few pixels wide; an ego-vehicle hood and `static` street furniture are void (ignored).

The output is deterministic in ``seed`` (NumPy's PCG64 and OpenCV drawing), one generator per image.
"""

import os

import cv2
import numpy as np

from contextnet_tf.data.labels import cityscapes_label_id as _id

CITIES = {"train": ("synthville", "polygontown"), "val": ("rendercity",), "test": ("pixelburg",)}
DEFAULT_IMAGE_SIZE = (256, 512)

# Surface texture amplitude per label id (relative brightness modulation by the image's noise fields).
_TEXTURE = {_id("road"): 0.10, _id("sidewalk"): 0.12, _id("building"): 0.10, _id("wall"): 0.14,
            _id("vegetation"): 0.35, _id("terrain"): 0.20, _id("sky"): 0.04}


def generate_synthetic_city(out_dir, num_train=100, num_val=20, image_size=DEFAULT_IMAGE_SIZE, seed=0, num_test=0):
    """Writes a synthetic city in the Cityscapes layout.

    ``leftImg8bit/{split}/{city}/{city}_{seq:06d}_{frame:06d}_leftImg8bit.png`` (8-bit RGB) and
    ``gtFine/{split}/{city}/..._gtFine_labelIds.png`` (8-bit grey, Cityscapes label ids) for train and val; the test
    split has images only (it loads with all-ignore labels, like unlabelled Cityscapes test data).

    Args:
        out_dir: root folder (created if needed).
        num_train, num_val, num_test: images per split.
        image_size: (height, width); 256x512 trains fast on a CPU, 1024x2048 is Cityscapes size.
        seed: the same seed gives byte-identical files.

    Returns:
        Dict split -> list of (image_path, label_path or None).
    """
    written = {}
    for split_index, (split, count) in enumerate((("train", num_train), ("val", num_val), ("test", num_test))):
        written[split] = []
        cities = CITIES[split]
        for i in range(count):
            city = cities[i % len(cities)]
            stem = f"{city}_{i // len(cities):06d}_{19 + 10 * split_index:06d}"
            image, label_ids = draw_scene(np.random.default_rng([seed, split_index, i]), image_size)
            image_path = os.path.join(out_dir, "leftImg8bit", split, city, f"{stem}_leftImg8bit.png")
            os.makedirs(os.path.dirname(image_path), exist_ok=True)
            cv2.imwrite(image_path, image[..., ::-1])
            label_path = None
            if split != "test":
                label_path = os.path.join(out_dir, "gtFine", split, city, f"{stem}_gtFine_labelIds.png")
                os.makedirs(os.path.dirname(label_path), exist_ok=True)
                cv2.imwrite(label_path, label_ids)
            written[split].append((image_path, label_path))
    return written


def draw_scene(rng, image_size=DEFAULT_IMAGE_SIZE):
    """Draws one street scene.

    Args:
        rng: `np.random.Generator`.
        image_size: (height, width).

    Returns:
        (RGB image uint8 [H, W, 3], Cityscapes label ids uint8 [H, W]).
    """
    return _Scene(rng, *image_size).draw()


def _jitter(rng, color, amount):
    return tuple(float(np.clip(c + rng.uniform(-amount, amount), 0, 255)) for c in color)


class _Scene:
    def __init__(self, rng, height, width):
        self.rng, self.h, self.w = rng, height, width
        self.unit = height / 256.0  # line widths and small sizes are given for a 256-pixel-high image
        self.image = np.zeros((height, width, 3), np.float32)
        self.label = np.zeros((height, width), np.uint8)
        self.horizon = int(height * rng.uniform(0.38, 0.5))
        self.vanish_x = width * rng.uniform(0.35, 0.65)
        self.road_half = width * rng.uniform(0.35, 0.6)  # half width of the road at the bottom edge
        self.walk = rng.uniform(0.25, 0.45)  # sidewalk width relative to the road half width

    # Geometry helpers --------------------------------------------------------------------------------------------
    def depth(self, y):
        """0 at the horizon, 1 at the bottom edge."""
        return np.clip((y - self.horizon) / (self.h - self.horizon), 1e-3, 1.0)

    def road_x(self, y, side, offset=1.0):
        """x of a line that runs to the vanishing point: offset 1 is the road edge, >1 outside it."""
        return self.vanish_x + side * offset * self.road_half * self.depth(y)

    def fill(self, points, color, label_id):
        points = np.round(np.asarray(points, np.float32)).astype(np.int32)
        cv2.fillPoly(self.image, [points], color, cv2.LINE_AA)
        cv2.fillPoly(self.label, [points], label_id)

    def rect(self, x0, y0, x1, y1, color, label_id):
        self.fill([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], color, label_id)

    def line(self, p0, p1, color, label_id, width):
        p0, p1 = tuple(int(round(v)) for v in p0), tuple(int(round(v)) for v in p1)
        width = max(1, int(round(width)))
        cv2.line(self.image, p0, p1, color, width, cv2.LINE_AA)
        cv2.line(self.label, p0, p1, label_id, width)

    def ellipse(self, center, axes, color, label_id):
        center = tuple(int(round(v)) for v in center)
        axes = tuple(max(1, int(round(v))) for v in axes)
        cv2.ellipse(self.image, center, axes, 0, 0, 360, color, -1, cv2.LINE_AA)
        cv2.ellipse(self.label, center, axes, 0, 0, 360, label_id, -1)

    # Layers, back to front ---------------------------------------------------------------------------------------
    def draw(self):
        self.sky()
        self.ground()
        for side in (-1, 1):
            self.facades(side)
        objects = self.street_objects()
        for _, draw, args in sorted(objects, key=lambda o: o[0]):
            draw(*args)
        if self.rng.random() < 0.4:
            self.ego_hood()
        return self.finish()

    def sky(self):
        overcast = self.rng.random() < 0.3
        top = _jitter(self.rng, (200, 200, 205) if overcast else (90, 140, 215), 20)
        bottom = _jitter(self.rng, (225, 225, 228) if overcast else (185, 210, 235), 15)
        t = np.linspace(0, 1, self.horizon + 1, dtype=np.float32)[:, None, None]
        self.image[: self.horizon + 1] = (1 - t) * np.array(top, np.float32) + t * np.array(bottom, np.float32)
        self.label[: self.horizon + 1] = _id("sky")

    def facades(self, side):
        rng = self.rng
        x_edge = self.road_x(self.h, side, 1 + self.walk)  # where the facade line meets the bottom edge
        # Facades recede towards the vanishing point: t runs from the bottom edge (1) to the vanishing point (0).
        t = 1.0
        while t > 0.03:
            t_far = t * rng.uniform(0.55, 0.85)
            if rng.random() < 0.12:  # a gap: sky shows through
                t = t_far
                continue
            xs = [self.vanish_x + (x_edge - self.vanish_x) * tt for tt in (t, t_far)]
            ground = [self.horizon + (self.h - self.horizon) * tt for tt in (t, t_far)]
            height = rng.uniform(0.5, 1.6) * (self.h - self.horizon)
            tops = [g - height * tt - (self.h * 0.05) for g, tt in zip(ground, (t, t_far))]
            color = _jitter(rng, [(150, 150, 150), (185, 165, 135), (150, 80, 60), (210, 205, 195),
                                  (110, 105, 100)][rng.integers(5)], 25)
            label_id = _id("wall") if rng.random() < 0.08 else _id("building")
            self.fill([(xs[0], ground[0]), (xs[1], ground[1]), (xs[1], tops[1]), (xs[0], tops[0])], color, label_id)
            if label_id == _id("building"):
                self.windows(xs, ground, tops, color)
            t = t_far

    def windows(self, xs, ground, tops, color):
        rng = self.rng
        dark = tuple(c * rng.uniform(0.3, 0.6) for c in color)
        rows, cols = rng.integers(3, 9), rng.integers(2, 7)
        for r in range(rows):
            for c in range(cols):
                u0, u1 = (c + 0.25) / cols, (c + 0.75) / cols
                v0, v1 = (r + 0.2) / rows, (r + 0.6) / rows
                pts = []
                for u, v in ((u0, v0), (u1, v0), (u1, v1), (u0, v1)):
                    x = xs[0] + (xs[1] - xs[0]) * u
                    g, top = ground[0] + (ground[1] - ground[0]) * u, tops[0] + (tops[1] - tops[0]) * u
                    pts.append((x, top + (g - top) * (0.05 + 0.8 * v)))
                self.fill(pts, dark, _id("building"))

    def ground(self):
        rng, h = self.rng, self.h
        # Sidewalk everywhere below the horizon; terrain and road go on top.
        self.rect(0, self.horizon, self.w, h, _jitter(rng, (140, 128, 132), 25), _id("sidewalk"))
        for side in (-1, 1):
            terrain = rng.random() < 0.5
            if terrain:  # a grass strip between road and sidewalk
                self.fill([(self.road_x(self.horizon, side, 1), self.horizon), (self.road_x(h, side, 1), h),
                           (self.road_x(h, side, 1.25), h), (self.road_x(self.horizon, side, 1.25), self.horizon)],
                          _jitter(rng, (120, 145, 75), 20), _id("terrain"))
        road = _jitter(rng, (105, 105, 110), 25)
        self.fill([(self.road_x(self.horizon, -1), self.horizon), (self.road_x(h, -1), h), (self.road_x(h, 1), h),
                   (self.road_x(self.horizon, 1), self.horizon)], road, _id("road"))
        # Dashed centre line; painted markings are road in Cityscapes.
        y = float(h)
        while y > self.horizon + 3:
            y_end = y - (y - self.horizon) * 0.12
            x0, x1 = self.road_x(y, 1, 0.02), self.road_x(y_end, 1, 0.02)
            self.line((x0, y), (x1, y_end), (225, 225, 215), _id("road"), 4 * self.unit * self.depth(y))
            y = y_end - (y_end - self.horizon) * 0.1

    def street_objects(self):
        """Returns (depth, draw function, args) of every object; drawn far to near."""
        rng, objects = self.rng, []
        for _ in range(rng.integers(2, 7)):  # vehicles on the road
            y = rng.uniform(self.horizon + 0.08 * (self.h - self.horizon), self.h * 1.05)
            lane = rng.uniform(-0.8, 0.8)
            kind = rng.choice(["car"] * 6 + ["truck", "bus", "train", "motorcycle", "bicycle"])
            objects.append((y, self.vehicle, (kind, self.road_x(y, 1, lane), y)))
        for _ in range(rng.integers(2, 9)):  # pedestrians on the sidewalks
            y = rng.uniform(self.horizon + 0.05 * (self.h - self.horizon), self.h)
            side = rng.choice([-1, 1])
            objects.append((y, self.person, (self.road_x(y, side, 1 + self.walk * rng.uniform(0.2, 0.9)), y,
                                             _id("person"))))
        for _ in range(rng.integers(2, 7)):  # poles with signs or lights, at the kerb
            y = rng.uniform(self.horizon + 0.05 * (self.h - self.horizon), self.h)
            objects.append((y, self.pole, (self.road_x(y, rng.choice([-1, 1]), 1.05 + 0.1 * rng.random()), y)))
        for _ in range(rng.integers(1, 6)):  # trees, hedges, fences and void street furniture behind the kerb
            y = rng.uniform(self.horizon + 0.02 * (self.h - self.horizon), self.h)
            x = self.road_x(y, rng.choice([-1, 1]), 1 + self.walk * rng.uniform(0.6, 1.3))
            kind = rng.choice([self.tree, self.tree, self.hedge, self.fence, self.static])
            objects.append((y, kind, (x, y)))
        return objects

    def vehicle(self, kind, x, y):
        rng, s = self.rng, self.depth(y) * self.h
        w, h = {"car": (0.45, 0.3), "truck": (0.6, 0.55), "bus": (0.75, 0.6), "train": (1.2, 0.6),
                "motorcycle": (0.14, 0.2), "bicycle": (0.14, 0.18)}[kind]
        w, h = w * s * rng.uniform(0.85, 1.15), h * s * rng.uniform(0.9, 1.1)
        if kind in ("motorcycle", "bicycle"):
            label = _id(kind)
            frame = (30, 30, 35) if kind == "motorcycle" else _jitter(rng, (120, 40, 40), 60)
            r = h * 0.3
            for wx in (x - w / 2 + r, x + w / 2 - r):
                self.ellipse((wx, y - r), (r, r), (25, 25, 25), label)
            self.line((x - w / 2 + r, y - r), (x, y - h * 0.8), frame, label, max(1, s * 0.012))
            self.line((x + w / 2 - r, y - r), (x, y - h * 0.8), frame, label, max(1, s * 0.012))
            self.person(x, y - h * 0.6, _id("rider"), scale=0.85)
            return
        self.fill([(x - w * 0.55, y), (x + w * 0.55, y), (x + w * 0.45, y + h * 0.06), (x - w * 0.45, y + h * 0.06)],
                  tuple(float(c) * 0.45 for c in self.image[min(int(y), self.h - 1), int(np.clip(x, 0, self.w - 1))]),
                  _id("road"))  # shadow
        body = _jitter(rng, [(170, 30, 30), (30, 50, 140), (225, 225, 225), (30, 30, 30), (110, 110, 115),
                             (160, 160, 165)][rng.integers(6)], 20)
        label = _id(kind)
        self.rect(x - w / 2, y - h, x + w / 2, y - h * 0.12, body, label)
        glass = (45, 55, 65)
        if kind == "car":
            self.fill([(x - w * 0.38, y - h), (x + w * 0.38, y - h), (x + w * 0.3, y - h * 1.35),
                       (x - w * 0.3, y - h * 1.35)], body, label)
            self.rect(x - w * 0.3, y - h * 1.3, x + w * 0.3, y - h * 0.95, glass, label)
        else:
            band = (y - h * 0.85, y - h * 0.6) if kind != "truck" else (y - h * 0.95, y - h * 0.75)
            self.rect(x - w * 0.45, band[0], x + w * 0.45, band[1], glass, label)
        for wx in (x - w * 0.32, x + w * 0.32):
            self.ellipse((wx, y - h * 0.12), (w * 0.09, h * 0.12), (20, 20, 20), label)

    def person(self, x, y, label, scale=1.0):
        rng, s = self.rng, self.depth(y) * self.h * 0.32 * scale * self.rng.uniform(0.85, 1.15)
        clothes = _jitter(rng, [(40, 40, 60), (150, 30, 40), (200, 200, 190), (60, 90, 50)][rng.integers(4)], 30)
        legs = _jitter(rng, (40, 45, 70), 20)
        self.rect(x - s * 0.08, y - s * 0.45, x + s * 0.08, y, legs, label)
        self.rect(x - s * 0.13, y - s * 0.85, x + s * 0.13, y - s * 0.42, clothes, label)
        self.ellipse((x, y - s * 0.93), (s * 0.08, s * 0.09), _jitter(rng, (200, 160, 130), 40), label)

    def pole(self, x, y):
        rng, s = self.rng, self.depth(y) * self.h
        top = y - s * rng.uniform(0.9, 1.4)
        self.line((x, y), (x, top), _jitter(rng, (120, 120, 125), 25), _id("pole"), max(1, s * 0.02))
        r = s * 0.06
        if rng.random() < 0.6:
            color = [(200, 30, 30), (30, 60, 170), (230, 200, 40), (235, 235, 235)][rng.integers(4)]
            if rng.random() < 0.5:
                self.ellipse((x, top + r), (r, r), color, _id("traffic sign"))
            else:
                self.fill([(x - r, top + 2 * r), (x + r, top + 2 * r), (x, top)], color, _id("traffic sign"))
        else:
            self.rect(x - r * 0.6, top, x + r * 0.6, top + r * 3, (35, 35, 35), _id("traffic light"))
            lit = rng.integers(3)
            self.ellipse((x, top + r * (0.5 + lit)), (r * 0.35, r * 0.35),
                         [(230, 40, 30), (240, 180, 30), (40, 220, 90)][lit], _id("traffic light"))

    def tree(self, x, y):
        rng, s = self.rng, self.depth(y) * self.h
        self.line((x, y), (x, y - s * 0.6), _jitter(rng, (90, 65, 45), 15), _id("vegetation"), max(1, s * 0.03))
        green = _jitter(rng, (70, 110, 45), 25)
        for _ in range(rng.integers(3, 7)):
            self.ellipse((x + s * rng.uniform(-0.25, 0.25), y - s * rng.uniform(0.6, 1.1)),
                         (s * rng.uniform(0.12, 0.3), s * rng.uniform(0.12, 0.25)), _jitter(rng, green, 15),
                         _id("vegetation"))

    def hedge(self, x, y):
        s = self.depth(y) * self.h
        self.rect(x - s * 0.4, y - s * 0.2, x + s * 0.4, y, _jitter(self.rng, (80, 120, 50), 25), _id("vegetation"))

    def fence(self, x, y):
        rng, s = self.rng, self.depth(y) * self.h
        color, label = _jitter(rng, (150, 130, 110), 30), _id("fence")
        x0, x1 = x - s * 0.5, x + s * 0.5
        for bar_y in (y - s * 0.25, y - s * 0.05):
            self.line((x0, bar_y), (x1, bar_y), color, label, max(1, s * 0.02))
        for bar_x in np.linspace(x0, x1, 8):
            self.line((bar_x, y), (bar_x, y - s * 0.3), color, label, max(1, s * 0.015))

    def static(self, x, y):
        s = self.depth(y) * self.h
        self.rect(x - s * 0.06, y - s * 0.15, x + s * 0.06, y, _jitter(self.rng, (70, 80, 70), 30), _id("static"))

    def ego_hood(self):
        top = self.h * self.rng.uniform(0.9, 0.96)
        self.fill([(0, self.h), (0, top + self.h * 0.02), (self.w * 0.5, top), (self.w, top + self.h * 0.02),
                   (self.w, self.h)], _jitter(self.rng, (40, 40, 45), 15), _id("ego vehicle"))

    def finish(self):
        """Surface textures, lighting and sensor noise."""
        rng, h, w = self.rng, self.h, self.w
        amplitude = np.zeros(256, np.float32)
        for label_id, amount in _TEXTURE.items():
            amplitude[label_id] = amount
        coarse = cv2.resize(rng.normal(0, 1, (max(2, h // 32), max(2, w // 32))).astype(np.float32), (w, h),
                            interpolation=cv2.INTER_CUBIC)
        fine = rng.normal(0, 1, (h, w)).astype(np.float32)
        texture = 1 + amplitude[self.label] * (0.6 * coarse + 0.5 * fine)
        light = rng.uniform(0.7, 1.25) * np.array(_jitter(rng, (1, 1, 1), 0.08), np.float32)
        gradient = 1 + rng.uniform(-0.25, 0.25) * np.linspace(-1, 1, w, dtype=np.float32)[None, :]
        image = self.image * (texture * gradient)[..., None] * light
        # Noise before the lens blur becomes spatially correlated, as in demosaiced camera images; then pixel noise.
        image += rng.normal(0, 3, image.shape).astype(np.float32)
        image = cv2.GaussianBlur(image, (0, 0), 0.6 * self.unit)
        image += rng.normal(0, 1, image.shape).astype(np.float32)
        return np.clip(image + 0.5, 0, 255).astype(np.uint8), self.label
