"""Which clip a probe cache file was made of, by its name (probe.py, kind_rate.py, speed_peak.py): what motion.py
and cleanflow.py compute the flow of again."""

from __future__ import annotations


def probe_clip(stem: str):
    """The clip a probe cache file was made of, by its name (probe.py: KIND_SEED, kind_rate.py: KIND_FPS_SEED,
    speed_peak.py: swing_SEED)."""
    parts = stem.split("_")
    if parts[0] == "independent":
        from s2s.independent import independent_clip

        return independent_clip(int(parts[1]), 8.0)
    if parts[0] == "generated":
        from s2s.synth import make_clip

        return make_clip(int(parts[1]), 8.0)
    if parts[0] == "swing":
        from speed_peak import pendulum_clip

        return pendulum_clip(int(parts[1]))[0]
    from kind_rate import scene_at

    return scene_at(int(parts[2]), parts[0], float(parts[1]))
