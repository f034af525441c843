"""Procedural shape families modelled on ShapeNet categories, each a union of exact primitives.

A family is three functions: ``sample(rng)`` draws the parameters (proportions, part counts and styles, floats
rounded to 3 decimals so the JSON copy rebuilds the very same shape), ``build(parameters)`` turns them into
primitives (`whitebox_hf.data.shape_primitives`) in the family's own units, and ``caption(parameters)`` names what
varies in words ("a round table with a single pedestal leg"). Coordinates: y is up, x is the shape's length
(a car's, an airplane's or a rifle's front is +x), z its depth. Parts that touch overlap a little, so no two
primitives share a face and the union's surface normal is defined almost everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from .shape_primitives import Box, Capsule, Cone, Cylinder, Primitive, Sphere, Torus

__all__ = ["SHAPE_FAMILIES", "ShapeFamily"]


@dataclass(frozen=True)
class ShapeFamily:
    name: str
    sample: Callable[[np.random.Generator], dict]
    build: Callable[[dict], list[Primitive]]
    caption: Callable[[dict], str]


def _u(rng: np.random.Generator, low: float, high: float) -> float:
    return round(float(rng.uniform(low, high)), 3)


def _pick(rng: np.random.Generator, options):
    return options[int(rng.integers(len(options)))]


def _grade(value: float, low: float, high: float, words=("short", "", "tall")) -> str:
    """A word for where ``value`` lies in [low, high]: the lower, middle or upper third."""
    third = (high - low) / 3
    return words[0] if value < low + third else (words[2] if value > high - third else words[1])


def _join(*words: str) -> str:
    return " ".join(w for w in words if w)


def _article(phrase: str) -> str:
    return ("an " if phrase[:1] in "aeiou" else "a ") + phrase


_NUMBER = {0: "no", 1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six"}


# --- table -------------------------------------------------------------------------------------------------------
def _table_sample(rng):
    top = _pick(rng, ["rectangular", "round"])
    return {
        "top": top, "legs": _pick(rng, ["four", "pedestal"]), "leg_profile": _pick(rng, ["square", "round"]),
        "width": _u(rng, 0.8, 1.6), "depth": _u(rng, 0.5, 1.0) if top == "rectangular" else None,
        "height": _u(rng, 0.4, 1.0), "top_thickness": _u(rng, 0.03, 0.08), "leg_thickness": _u(rng, 0.03, 0.08),
    }


def _table_build(p):
    w, h, t, leg = p["width"] / 2, p["height"], p["top_thickness"], p["leg_thickness"]
    d = p["depth"] / 2 if p["top"] == "rectangular" else w
    parts: list[Primitive] = [Box((0, h - t / 2, 0), (w, t / 2, d)) if p["top"] == "rectangular"
                              else Cylinder((0, h - t / 2, 0), w, t / 2)]
    leg_h = (h - t / 2) / 2  # legs reach half-way into the top, so they overlap it
    if p["legs"] == "pedestal":
        parts.append(Cylinder((0, leg_h, 0), 1.5 * leg, leg_h))
        parts.append(Cylinder((0, t / 2, 0), 0.45 * min(w, d), t / 2))
    else:
        inset = 0.85 if p["top"] == "rectangular" else 0.6
        for sx in (-1, 1):
            for sz in (-1, 1):
                c = (sx * inset * (w - leg), leg_h, sz * inset * (d - leg))
                parts.append(Box(c, (leg / 2, leg_h, leg / 2)) if p["leg_profile"] == "square"
                             else Cylinder(c, leg / 2, leg_h))
    return parts


def _table_caption(p):
    size = _grade(p["height"], 0.4, 1.0, ("low", "", "tall"))
    legs = ("a single pedestal leg" if p["legs"] == "pedestal"
            else f"four {_grade(p['leg_thickness'], 0.03, 0.08, ('thin', '', 'thick'))} {p['leg_profile']} legs")
    return f"{_article(_join(size, p['top'], 'table'))} with {_join(legs)}".replace("  ", " ")


# --- chair -------------------------------------------------------------------------------------------------------
def _chair_sample(rng):
    back = _pick(rng, ["solid", "slatted"])
    return {
        "back": back, "slats": int(rng.integers(2, 5)) if back == "slatted" else 0,
        "armrests": bool(rng.random() < 0.5), "leg_profile": _pick(rng, ["square", "round"]),
        "seat_width": _u(rng, 0.4, 0.6), "seat_depth": _u(rng, 0.4, 0.6), "seat_height": _u(rng, 0.35, 0.55),
        "back_height": _u(rng, 0.3, 0.8), "seat_thickness": _u(rng, 0.03, 0.07), "leg_thickness": _u(rng, 0.03, 0.06),
    }


def _chair_build(p):
    w, d, sh, t, leg = p["seat_width"] / 2, p["seat_depth"] / 2, p["seat_height"], p["seat_thickness"], \
        p["leg_thickness"]
    parts: list[Primitive] = [Box((0, sh - t / 2, 0), (w, t / 2, d))]
    leg_h = (sh - t / 2) / 2
    for sx in (-1, 1):
        for sz in (-1, 1):
            c = (sx * (w - leg), leg_h, sz * (d - leg))
            parts.append(Box(c, (leg / 2, leg_h, leg / 2)) if p["leg_profile"] == "square"
                         else Cylinder(c, leg / 2, leg_h))
    bh, back_t = p["back_height"], 0.6 * t
    back_z = -d + back_t / 2
    if p["back"] == "solid":
        parts.append(Box((0, sh + bh / 2 - t / 2, back_z), (w, bh / 2, back_t / 2)))
    else:
        # Two posts, a top rail and the slats between the posts.
        for sx in (-1, 1):
            parts.append(Box((sx * (w - leg / 2), sh + bh / 2 - t / 2, back_z), (leg / 2, bh / 2, back_t / 2)))
        parts.append(Box((0, sh + bh - t / 2 - leg / 2, back_z), (w, leg / 2, back_t / 2)))
        n, slat_w = p["slats"], 0.6 * leg
        for x in np.linspace(-w + leg, w - leg, n + 2)[1:-1]:
            parts.append(Box((round(float(x), 6), sh + bh / 2 - t / 2, back_z), (slat_w / 2, bh / 2, back_t / 3)))
    if p["armrests"]:
        arm_y = sh + 0.2
        for sx in (-1, 1):
            parts.append(Box((sx * (w - leg / 2), arm_y, 0), (leg / 2, leg / 2, d)))
            parts.append(Box((sx * (w - leg / 2), (sh + arm_y) / 2, d - leg), (leg / 2, (arm_y - sh) / 2 + t, leg / 2)))
    return parts


def _chair_caption(p):
    back = _grade(p["back_height"], 0.3, 0.8, ("low", "", "tall"))
    back = (f"{_article(_join(back, 'solid back'))}" if p["back"] == "solid"
            else f"{_article(_join(back, 'slatted back'))} of {_NUMBER[p['slats']]} slats")
    arms = " and armrests" if p["armrests"] else " and no armrests"
    return f"a chair with {p['leg_profile']} legs, {back}{arms}"


# --- lamp --------------------------------------------------------------------------------------------------------
def _lamp_sample(rng):
    return {
        "base": _pick(rng, ["round", "square"]), "arm": _pick(rng, ["straight", "bent"]),
        "shade": _pick(rng, ["cone", "globe"]), "height": _u(rng, 0.6, 1.6), "base_size": _u(rng, 0.15, 0.3),
        "shade_size": _u(rng, 0.12, 0.3), "arm_thickness": _u(rng, 0.015, 0.035),
    }


def _lamp_build(p):
    b, h, s, r = p["base_size"], p["height"], p["shade_size"], p["arm_thickness"]
    base_t = 0.05
    parts: list[Primitive] = [Cylinder((0, base_t / 2, 0), b, base_t / 2) if p["base"] == "round"
                              else Box((0, base_t / 2, 0), (b, base_t / 2, b))]
    foot = (0.0, 0.04, 0.0)  # the arm's round end stays inside the base (r <= 0.035)
    if p["arm"] == "straight":
        top = (0.0, h, 0.0)
        parts.append(Capsule(foot, top, r))
    else:
        elbow = (0.0, round(0.6 * h, 6), 0.0)
        top = (round(0.35 * h, 6), h, 0.0)
        parts.append(Capsule(foot, elbow, r))
        parts.append(Capsule(elbow, top, r))
    if p["shade"] == "cone":
        # The arm ends inside the shade's narrow top; the shade opens downwards.
        parts.append(Cone((top[0], top[1] - 0.6 * s + 2 * r, 0), s, 0.35 * s, 0.6 * s))
    else:
        parts.append(Sphere((top[0], top[1] - 0.7 * s + r, 0), s))
    return parts


def _lamp_caption(p):
    size = _grade(p["height"], 0.6, 1.6, ("short", "", "tall"))
    shade = "a cone shade" if p["shade"] == "cone" else "a globe shade"
    return f"{_article(_join(size, 'lamp'))} with a {p['base']} base, a {p['arm']} arm and {shade}"


# --- airplane ----------------------------------------------------------------------------------------------------
def _airplane_sample(rng):
    return {
        "length": _u(rng, 1.2, 2.0), "fuselage_radius": _u(rng, 0.07, 0.13), "wing_span": _u(rng, 1.0, 2.0),
        "wing_chord": _u(rng, 0.15, 0.35), "wing_position": _pick(rng, ["low", "high"]),
        "engines": int(_pick(rng, [0, 2, 4])), "tail_height": _u(rng, 0.15, 0.35),
    }


def _airplane_build(p):
    half, r, span, chord = p["length"] / 2, p["fuselage_radius"], p["wing_span"] / 2, p["wing_chord"]
    parts: list[Primitive] = [Capsule((-half, 0, 0), (half, 0, 0), r)]
    wing_y = 0.6 * r if p["wing_position"] == "high" else -0.6 * r
    wing_t = 0.02
    parts.append(Box((0.05 * half, wing_y, 0), (chord / 2, wing_t, span)))
    tail_x = -half + 0.12
    parts.append(Box((tail_x, 0, 0), (0.08, wing_t, 0.3 * span)))
    parts.append(Box((tail_x, r + p["tail_height"] / 2 - 0.02, 0), (0.08, p["tail_height"] / 2, wing_t)))
    positions = {0: [], 2: [0.4], 4: [0.3, 0.65]}[p["engines"]]
    for frac in positions:
        for sz in (-1, 1):
            # Each engine hangs under the wing, its top overlapping the wing's lower face.
            parts.append(Cylinder((0.05 * half + 0.05, wing_y - wing_t - 0.035, round(sz * frac * span, 6)),
                                  0.05, 0.5 * chord, axis=0))
    return parts


def _airplane_caption(p):
    body = _grade(p["length"], 1.2, 2.0, ("short", "medium-length", "long"))
    span = _grade(p["wing_span"], 1.0, 2.0, ("short", "", "wide"))
    engines = "no engines" if p["engines"] == 0 else f"{_NUMBER[p['engines']]} engines"
    return f"an airplane with a {body} fuselage, {_join(span, p['wing_position'], 'wings')} and {engines}"


# --- car ---------------------------------------------------------------------------------------------------------
def _car_sample(rng):
    return {
        "style": _pick(rng, ["sedan", "hatchback", "pickup"]), "length": _u(rng, 1.4, 2.2), "width": _u(rng, 0.7, 0.9),
        "body_height": _u(rng, 0.25, 0.4), "cabin_height": _u(rng, 0.2, 0.35), "wheel_radius": _u(rng, 0.12, 0.22),
    }


def _car_build(p):
    half, w, bh, ch, wr = p["length"] / 2, p["width"] / 2, p["body_height"], p["cabin_height"], p["wheel_radius"]
    base = wr * 0.8  # the body's underside sits below the wheel axles
    parts: list[Primitive] = [Box((0, base + bh / 2, 0), (half, bh / 2, w))]
    cabin = {"sedan": (-0.1 * half, 0.45 * half), "hatchback": (-0.3 * half, 0.6 * half),
             "pickup": (0.25 * half, 0.3 * half)}[p["style"]]
    parts.append(Box((round(cabin[0], 6), base + bh + ch / 2 - 0.02, 0), (round(cabin[1], 6), ch / 2 + 0.02, 0.9 * w)))
    for sx in (-1, 1):
        for sz in (-1, 1):
            parts.append(Cylinder((round(sx * 0.65 * half, 6), wr, round(sz * (w - 0.05), 6)), wr, 0.08, axis=2))
    return parts


def _car_caption(p):
    size = _grade(p["length"], 1.4, 2.2, ("compact", "", "long"))
    wheels = _grade(p["wheel_radius"], 0.12, 0.22, ("small", "medium", "large"))
    kind = {"sedan": "sedan car", "hatchback": "hatchback car", "pickup": "pickup truck"}[p["style"]]
    return f"{_article(_join(size, kind))} with {wheels} wheels"


# --- rifle -------------------------------------------------------------------------------------------------------
def _rifle_sample(rng):
    return {
        "barrel_length": _u(rng, 0.6, 1.2), "barrel_radius": _u(rng, 0.015, 0.03), "stock_length": _u(rng, 0.3, 0.5),
        "scope": bool(rng.random() < 0.5), "magazine": bool(rng.random() < 0.6), "receiver_length": _u(rng, 0.25, 0.4),
    }


def _rifle_build(p):
    bl, br, sl, rl = p["barrel_length"], p["barrel_radius"], p["stock_length"], p["receiver_length"]
    rh = 0.06
    parts: list[Primitive] = [Box((0, 0, 0), (rl / 2, rh, 0.03))]
    parts.append(Cylinder((rl / 2 + bl / 2 - 0.02, 0.02, 0), br, bl / 2 + 0.02, axis=0))
    parts.append(Box((-rl / 2 - sl / 2 + 0.02, -0.03, 0), (sl / 2 + 0.02, 0.07, 0.025)))
    parts.append(Box((-rl / 2 + 0.04, -rh - 0.06, 0), (0.025, 0.07, 0.02)))  # grip
    if p["magazine"]:
        parts.append(Box((0.08 * rl, -rh - 0.08, 0), (0.03, 0.09, 0.018)))
    if p["scope"]:
        parts.append(Cylinder((0, rh + 0.04, 0), 0.025, 0.4 * rl, axis=0))
        parts.append(Box((0, rh + 0.01, 0), (0.02, 0.03, 0.012)))  # the scope's mount
    return parts


def _rifle_caption(p):
    barrel = _grade(p["barrel_length"], 0.6, 1.2, ("short", "medium-length", "long"))
    parts = [f"a {barrel} barrel"] + [w for w, on in (("a scope", p["scope"]), ("a magazine", p["magazine"])) if on]
    if len(parts) == 1:
        parts.append("no scope")
    return "a rifle with " + ", ".join(parts[:-1]) + " and " + parts[-1]


# --- mug ---------------------------------------------------------------------------------------------------------
def _mug_sample(rng):
    return {
        "radius": _u(rng, 0.25, 0.45), "height": _u(rng, 0.5, 1.0), "handle": _pick(rng, ["round", "square"]),
        "handle_size": _u(rng, 0.2, 0.35), "handle_thickness": _u(rng, 0.03, 0.05),
    }


def _mug_build(p):
    # The handle's size is a fraction of the height, so it never reaches past the rim or the bottom.
    r, h, ht = p["radius"], p["height"], p["handle_thickness"]
    hs = p["handle_size"] * h
    parts: list[Primitive] = [Cylinder((0, h / 2, 0), r, h / 2)]
    if p["handle"] == "round":
        # The ring lies in the x-y plane; its inner half is buried in the body.
        parts.append(Torus((r, h / 2, 0), hs, ht, axis=2))
    else:
        for y in (h / 2 - hs, h / 2 + hs):
            parts.append(Box((r + (hs - ht) / 2, y, 0), ((hs + ht) / 2, ht, ht)))
        parts.append(Box((r + hs, h / 2, 0), (ht, hs + ht, ht)))
    return parts


def _mug_caption(p):
    shape = _grade(p["height"] / p["radius"], 1.1, 4.0, ("short wide", "", "tall narrow"))
    return f"{_article(_join(shape, 'mug'))} with a {p['handle']} handle"


# --- bottle / vase -----------------------------------------------------------------------------------------------
def _bottle_sample(rng):
    return {
        "kind": _pick(rng, ["bottle", "vase"]), "body_radius": _u(rng, 0.15, 0.35), "body_height": _u(rng, 0.5, 1.2),
        "neck_radius": _u(rng, 0.04, 0.1), "neck_length": _u(rng, 0.1, 0.45), "cap": bool(rng.random() < 0.5),
    }


def _bottle_build(p):
    r, h, nr, nl = p["body_radius"], p["body_height"], p["neck_radius"], p["neck_length"]
    if p["kind"] == "bottle":
        shoulder = 0.25 * h
        parts: list[Primitive] = [Cylinder((0, (h - shoulder) / 2, 0), r, (h - shoulder) / 2 + 0.01)]
        parts.append(Cone((0, h - shoulder / 2, 0), r, nr, shoulder / 2))
    else:
        # A round-bellied vase: a sphere on a foot, the neck rising from the top of the belly.
        parts = [Sphere((0, r + 0.04, 0), r), Cylinder((0, 0.03, 0), 0.6 * r, 0.03)]
        h = 2 * r + 0.04
    parts.append(Cylinder((0, h + nl / 2 - 0.02, 0), nr, nl / 2 + 0.02))
    top = h + nl
    if p["cap"]:
        parts.append(Cylinder((0, top + 0.02, 0), nr * 1.25, 0.04))
    elif p["kind"] == "vase":
        parts.append(Cone((0, top + 0.03, 0), nr, 1.8 * nr, 0.04))  # a flared lip
    return parts


def _bottle_caption(p):
    if p["kind"] == "bottle":
        shape = _grade(p["body_height"] / p["body_radius"], 1.4, 8.0, ("short wide", "", "tall narrow"))
    else:
        shape = _grade(p["body_radius"], 0.15, 0.35, ("small", "", "large round"))
    neck = _grade(p["neck_length"], 0.1, 0.45, ("short", "medium", "long"))
    top = " and a cap" if p["cap"] else (" and a flared lip" if p["kind"] == "vase" else "")
    return f"{_article(_join(shape, p['kind']))} with {_article(neck + ' neck')}{top}"


SHAPE_FAMILIES: dict[str, ShapeFamily] = {
    f.name: f for f in (
        ShapeFamily("table", _table_sample, _table_build, _table_caption),
        ShapeFamily("chair", _chair_sample, _chair_build, _chair_caption),
        ShapeFamily("lamp", _lamp_sample, _lamp_build, _lamp_caption),
        ShapeFamily("airplane", _airplane_sample, _airplane_build, _airplane_caption),
        ShapeFamily("car", _car_sample, _car_build, _car_caption),
        ShapeFamily("rifle", _rifle_sample, _rifle_build, _rifle_caption),
        ShapeFamily("mug", _mug_sample, _mug_build, _mug_caption),
        ShapeFamily("bottle", _bottle_sample, _bottle_build, _bottle_caption),
    )
}
