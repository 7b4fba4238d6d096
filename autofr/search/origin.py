"""Where a trial came from: one type, :class:`Origin`, that knows what each kind of point is.

A trial of an Auto-FR study is full compute, a hand-set *reference* (FRDiff's uniform schedules,
fewer steps, DeepCache, a front/back block split, MagCache's rule written as an autofr schedule), a calibrated warm-start schedule (autofr's own rule), a
schedule the sampler proposed (``search``) or a *peer* (another library's cache, measured in the
study's protocol). Each member knows its stored name (the ``origin`` trial user attribute; the names
are those studies have always stored, so old studies read unchanged), its role, its legend name and
its plot style.

Adding a kind is one line below: its stored name, role, label (legend name), plot style (None: drawn with the
searched schedules; a hand-set reference needs one) and confirmation rank (the order hand-set references are
confirmed in). The code that makes such points (``space.warm_start``, ``warmstart.calibrated_entries``) tags
them with the member; plots, tables, confirmation and the answer follow its role.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Role(enum.Enum):
    """What a point is to the study's answer."""

    FULL_COMPUTE = "full compute"  # the point every other is compared with; never the answer
    REFERENCE = "reference"  # a hand-set schedule the answer is measured against
    AUTOFR = "autofr"  # a schedule autofr found (the sampler's, or its calibrated warm start)
    PEER = "peer"  # another library's cache: a baseline, but no schedule


@dataclass(frozen=True)
class PlotStyle:
    """A point's marker in matplotlib and plotly, its colour and size."""

    marker: str
    colour: str
    size: int
    plotly_symbol: str


class Origin(str, enum.Enum):
    """The origin of a trial; compares equal to its stored name (``Origin.FRDIFF == "frdiff"``)."""

    # stored name, role, label (legend name), plot style (None: drawn with the searched schedules), confirmation rank
    FULL_COMPUTE = ("baseline", Role.FULL_COMPUTE, "full compute", PlotStyle("*", "black", 14, "star"), 0)
    FRDIFF = ("frdiff", Role.REFERENCE, "FRDiff uniform", PlotStyle("D", "tab:orange", 8, "diamond"), 1)
    REDUCED_STEPS = (
        "reduced_steps",
        Role.REFERENCE,
        "full compute, fewer steps",
        PlotStyle("s", "tab:green", 8, "square"),
        3,
    )
    DEEPCACHE = ("deepcache", Role.REFERENCE, "DeepCache", PlotStyle("^", "tab:purple", 9, "triangle-up"), 2)
    BLOCK_SPLIT = (
        "block_split",
        Role.REFERENCE,
        "front/back block split",
        PlotStyle("v", "tab:cyan", 9, "triangle-down"),
        4,
    )
    MAGCACHE_RULE = ("magcache_rule", Role.REFERENCE, "MagCache's rule", PlotStyle("h", "tab:olive", 9, "hexagon"), 5)
    CALIBRATED = ("calibrated", Role.AUTOFR, "calibrated warm start", None, 0)
    SEARCH = ("search", Role.AUTOFR, "searched schedules", None, 0)
    PEER = ("peer", Role.PEER, "peer", None, 0)

    def __new__(cls, stored: str, role: Role, label: str, style: PlotStyle | None, confirm_rank: int):
        if role in (Role.FULL_COMPUTE, Role.REFERENCE) and style is None:
            raise TypeError(f"origin {stored!r}: a hand-set point needs a plot style of its own")
        member = str.__new__(cls, stored)
        member._value_ = stored
        member.role, member.label, member.style, member.confirm_rank = role, label, style, confirm_rank
        return member

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)

    @classmethod
    def parse(cls, stored: object) -> Origin:
        """The origin a stored ``origin`` attribute names; a trial without one (or with a name this
        version does not know) was proposed by the sampler."""
        try:
            return cls(str(stored))
        except ValueError:
            return cls.SEARCH

    @property
    def is_full_compute(self) -> bool:
        return self.role is Role.FULL_COMPUTE

    @property
    def is_reference(self) -> bool:
        """A hand-set point: full compute, or a reference schedule (FRDiff, fewer steps, DeepCache-style)."""
        return self.role in (Role.FULL_COMPUTE, Role.REFERENCE)

    @property
    def is_peer(self) -> bool:
        return self.role is Role.PEER

    @property
    def is_enqueued(self) -> bool:
        """Enqueued by the warm start (every reference, and the calibrated schedules)."""
        return self.is_reference or self is Origin.CALIBRATED

    @classmethod
    def references(cls) -> list[Origin]:
        """The hand-set reference schedules (full compute aside), in the order they are confirmed."""
        return sorted((o for o in cls if o.role is Role.REFERENCE), key=lambda o: o.confirm_rank)

    @classmethod
    def styled(cls) -> list[Origin]:
        """The origins drawn with markers of their own (in legend order)."""
        return [o for o in cls if o.style is not None]
