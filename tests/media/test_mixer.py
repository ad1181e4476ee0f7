from __future__ import annotations

import numpy as np
import pytest
from numpy.typing import NDArray

from callroom.media.mixer import Mixer, frame_dbov
from callroom.media.talkers import FloorChange, TalkerDetector
from callroom.media.tones import HoldMusic, ToneGenerator
from tests.media.audio import tone_level

# Each speaker plays its own tone; what a port hears is read back per frequency.
FREQS = {"A": 500.0, "B": 900.0, "C": 1300.0, "D": 1700.0, "M": 2100.0, "W": 2500.0}
AMP = 4000.0
HEARD = 0.5 * AMP  # a tone at >= half its level counts as heard
NOT_HEARD = 0.02 * AMP  # and below 2% as absent


def run(mixer: Mixer[str], speakers: str, ticks: int = 5, extra: dict[str, ToneGenerator | HoldMusic]
        | None = None) -> dict[str, NDArray[np.int16]]:
    """Tick ``ticks`` times with every speaker in ``speakers`` playing its tone; return the last 4
    frames each port heard, concatenated."""
    gens: dict[str, ToneGenerator | HoldMusic] = {p: ToneGenerator([FREQS[p]], AMP) for p in speakers}
    gens.update(extra or {})
    heard: dict[str, list[NDArray[np.int16]]] = {}
    for _ in range(ticks):
        out = mixer.tick({p: g.next_frame() for p, g in gens.items()})
        for p, frame in out.items():
            heard.setdefault(p, []).append(frame)
    return {p: np.concatenate(frames[-4:]) for p, frames in heard.items()}


def hears(heard: dict[str, NDArray[np.int16]], listener: str) -> set[str]:
    """Which tones ``listener`` hears; fails if any tone sits between the two thresholds."""
    if listener not in heard:
        return set()
    out = set()
    for name, f in FREQS.items():
        level = tone_level(heard[listener], f)
        assert level >= HEARD or level <= NOT_HEARD, (listener, name, level)
        if level >= HEARD:
            out.add(name)
    return out


def conference(ports: str, extra: str = "") -> Mixer[str]:
    m: Mixer[str] = Mixer(capacity=4)  # small capacity: also exercises growing the matrices
    for p in ports + extra:
        m.add_port(p)
    m.connect_all(ports)
    return m


def test_everyone_hears_everyone_but_themselves() -> None:
    m = conference("ABC")
    heard = run(m, "ABC")
    assert hears(heard, "A") == {"B", "C"}
    assert hears(heard, "B") == {"A", "C"}
    assert hears(heard, "C") == {"A", "B"}


def test_changes_are_queued_until_the_next_tick() -> None:
    m = conference("AB")
    assert m.pending == 3 and m.ports == []  # two ports added, one block of edges
    run(m, "AB", ticks=1)
    assert m.pending == 0 and m.sources("A") == {"B": 1.0}
    m.disconnect("B", "A")
    assert m.sources("A") == {"B": 1.0}  # not applied yet
    heard = run(m, "AB", ticks=1)
    assert "A" not in heard and hears(heard, "B") == {"A"}


def test_block_operations_are_the_edges_one_by_one() -> None:
    ports = "ABCDMW"
    rng = np.random.default_rng(7)
    blocks, single = Mixer[str](capacity=4), Mixer[str](capacity=4)
    for m in (blocks, single):
        for p in ports:
            m.add_port(p)
    single.connect("A", "A")  # an edge to itself survives the blocks as it is
    blocks.connect("A", "A")
    for _ in range(40):
        srcs = [p for p in ports if rng.random() < 0.5]
        dsts = [p for p in ports if rng.random() < 0.5]
        connect, gain = bool(rng.random() < 0.6), float(rng.choice([1.0, 0.5]))
        if connect:
            blocks.connect_block(srcs, dsts, gain)
        else:
            blocks.disconnect_block(srcs, dsts)
        for d in dsts:
            for s in srcs:
                if s != d:
                    single.connect(s, d, gain) if connect else single.disconnect(s, d)
        blocks.apply()
        single.apply()
        assert {p: blocks.sources(p) for p in ports} == {p: single.sources(p) for p in ports}
    assert blocks.sources("A")["A"] == 1.0


def test_a_block_needs_existing_ports() -> None:
    m = conference("AB")
    with pytest.raises(KeyError):
        m.connect_block("AB", "Z")


def test_monitor_hears_all_heard_by_none() -> None:
    m = conference("ABC", extra="M")
    for p in "ABC":
        m.connect(p, "M")
    heard = run(m, "ABCM")
    assert hears(heard, "M") == {"A", "B", "C"}
    for p in "ABC":
        assert "M" not in hears(heard, p)
        assert hears(heard, p) == set("ABC") - {p}


def test_whisper_heard_only_by_targets() -> None:
    m = conference("ABCD", extra="W")
    for p in "ABCD":
        m.connect(p, "W")  # the coach hears the whole call
    m.connect("W", "A")  # and whispers to A only
    heard = run(m, "ABCDW")
    assert hears(heard, "A") == {"B", "C", "D", "W"}
    for p in "BCD":
        assert hears(heard, p) == set("ABCD") - {p}
    assert hears(heard, "W") == set("ABCD")


def test_mute_is_rx_disabled_and_deaf_is_tx_disabled() -> None:
    m = conference("ABC")
    m.set_rx("A", False)
    m.set_tx("B", False)
    heard = run(m, "ABC")
    assert hears(heard, "A") == {"B", "C"}  # a muted port still hears
    assert "B" not in heard  # a deaf port gets nothing
    assert hears(heard, "C") == {"B"}  # nobody hears A
    assert m.level_dbov("A") == -127.0 and m.level_dbov("B") > -30
    m.set_rx("A", True)
    assert "A" in hears(run(m, "ABC"), "C")


def test_hold_hears_only_music_and_is_heard_by_none() -> None:
    m = conference("ABC", extra="H")  # H: the hold-music port
    for p in "BC":
        m.disconnect("A", p)
        m.disconnect(p, "A")
    m.connect("H", "A")
    heard = run(m, "ABC", extra={"H": HoldMusic()})
    assert hears(heard, "B") == {"C"} and hears(heard, "C") == {"B"}
    assert hears(heard, "A") == set()  # none of the speakers' tones ...
    assert float(np.abs(heard["A"]).max()) > 500  # ... but the music is there
    assert "H" not in heard  # the music source hears nothing


def test_gain_per_edge_and_set_gain() -> None:
    m = conference("ABC")
    m.set_gain("B", "A", 0.25)
    heard = run(m, "ABC")
    assert tone_level(heard["A"], FREQS["B"]) == pytest.approx(AMP * 0.25, rel=0.02)
    assert tone_level(heard["A"], FREQS["C"]) == pytest.approx(AMP, rel=0.02)
    assert tone_level(heard["C"], FREQS["B"]) == pytest.approx(AMP, rel=0.02)
    m.set_gain("A", "A", 2.0)  # no such edge: ignored
    run(m, "ABC", ticks=1)
    assert "A" not in m.sources("A")


def test_remove_and_readd_port() -> None:
    m = conference("ABC")
    run(m, "ABC", ticks=1)
    m.remove_port("C")
    with pytest.raises(KeyError):
        m.connect("C", "A")
    m.add_port("C")  # same id again, fresh and unconnected
    heard = run(m, "ABC")
    assert hears(heard, "A") == {"B"} and "C" not in heard
    with pytest.raises(ValueError):
        m.add_port("A")


def test_sparse_chain_and_loopback() -> None:
    m: Mixer[str] = Mixer()
    for p in "ABCD":
        m.add_port(p)
    m.connect("A", "B")
    m.connect("B", "C")
    m.connect("C", "D")
    m.connect("D", "D", 0.5)  # echo test: hears itself
    heard = run(m, "ABCD")
    assert hears(heard, "B") == {"A"} and hears(heard, "C") == {"B"}
    assert tone_level(heard["D"], FREQS["D"]) == pytest.approx(AMP * 0.5, rel=0.02)
    assert "A" not in heard


def test_many_conferences_match_a_naive_mix() -> None:
    rng = np.random.default_rng(5)
    m: Mixer[int] = Mixer()
    n = 40
    for p in range(n):
        m.add_port(p)
    for start in range(0, 30, 5):
        m.connect_all(range(start, start + 5))
    m.connect(0, 35, 0.7)  # one-way listen across conferences
    m.connect(36, 37, 1.5)
    m.set_rx(3, False)
    frames = {p: rng.integers(-3000, 3000, 160).astype(np.int16) for p in range(n)}
    out = m.tick(frames)
    expected: dict[int, NDArray[np.float64]] = {}
    for dst in range(n):
        src = m.sources(dst)
        if src:
            expected[dst] = sum((frames[s].astype(np.float64) * g * (s != 3) for s, g in src.items()),
                                np.zeros(160))
    assert set(out) == set(expected)
    for p, e in expected.items():
        assert np.max(np.abs(out[p] - np.clip(np.rint(e), -32768, 32767))) <= 1, p


def test_saturation_and_adaptive_gain() -> None:
    loud = {p: np.full(160, 20000, dtype=np.int16) for p in "ABC"}
    m = conference("ABC")
    assert int(m.tick(loud)["A"].max()) == 32767  # 40000 saturates
    agc = conference("ABC")
    agc.adaptive_gain = True
    out = agc.tick(loud)["A"]
    assert int(out.max()) <= 32767 and int(out.min()) > 30000  # scaled, not clipped flat at a rail
    quiet = {p: np.full(160, 1000, dtype=np.int16) for p in "ABC"}
    first = int(agc.tick(quiet)["A"][0])
    for _ in range(200):  # 4 s
        last = int(agc.tick(quiet)["A"][0])
    assert first < 2000 and last == 2000  # gain recovers to unity


def test_levels_and_frame_dbov() -> None:
    assert frame_dbov(np.zeros(160, np.int16)) == -127.0
    full = np.where(np.arange(160) % 2 == 0, 32767, -32768).astype(np.int16)
    assert frame_dbov(full) == pytest.approx(0.0, abs=0.01)
    m = conference("AB")
    for _ in range(30):
        m.tick({"A": ToneGenerator([500], 10362).next_frame(), "B": None})
    # a sine of peak 10362 is -13 dBov (RMS = peak / sqrt 2)
    assert m.level_dbov("A") == pytest.approx(20 * np.log10(10362 / np.sqrt(2) / 32768), abs=0.2)
    assert m.levels()["B"] == -127.0


def test_talker_detector_hysteresis() -> None:
    td: TalkerDetector[str] = TalkerDetector(min_level_dbov=-40, hold_ticks=3, switch_margin_db=3)
    quiet = {"A": -60.0, "B": -60.0}
    assert td.update(quiet) is None
    changes = [td.update({"A": -20.0, "B": -60.0}) for _ in range(3)]
    assert changes == [None, None, FloorChange(None, "A")]
    # B slightly louder than A (within the margin): A keeps the floor
    assert all(td.update({"A": -20.0, "B": -18.0}) is None for _ in range(10))
    # a brief burst from B does not steal it
    assert td.update({"A": -20.0, "B": -10.0}) is None
    assert td.update({"A": -20.0, "B": -18.0}) is None
    assert td.current == "A"
    # sustained louder B does
    changes = [td.update({"A": -20.0, "B": -10.0}) for _ in range(3)]
    assert changes == [None, None, FloorChange("A", "B")]
    # silence: B keeps it for hold_ticks - 1, then the floor is free
    changes = [td.update(quiet) for _ in range(3)]
    assert changes == [None, None, FloorChange("B", None)]
    # a talker that leaves loses the floor at once
    for _ in range(3):
        td.update({"A": -20.0})
    assert td.current == "A"
    assert td.update({"B": -60.0}) == FloorChange("A", None)


def test_talker_detector_driven_by_mixer_levels() -> None:
    m = conference("ABC")
    td: TalkerDetector[str] = TalkerDetector(hold_ticks=5)
    a = ToneGenerator([FREQS["A"]], 8000)
    c = ToneGenerator([FREQS["C"]], 2000)
    floor: list[FloorChange[str]] = []
    for _ in range(20):
        m.tick({"A": a.next_frame(), "C": c.next_frame()})
        change = td.update(m.levels())
        if change:
            floor.append(change)
    assert floor == [FloorChange(None, "A")]


def test_talker_detector_steady_means_update_changes_nothing() -> None:
    """``steady`` (the engine's cheap check) is only true when ``update`` would leave the detector as it is."""
    rng = np.random.default_rng(11)
    for trial in range(40):
        td: TalkerDetector[str] = TalkerDetector(min_level_dbov=-40, hold_ticks=int(rng.integers(1, 4)),
                                                 switch_margin_db=3)
        ports = "ABCD"[: int(rng.integers(1, 5))]
        steady_seen = 0
        for _ in range(60):
            present = [p for p in ports if rng.random() > 0.05]
            levels = {p: float(rng.choice([-60.0, -20.0, -19.0, -10.0, -16.5])) for p in present}
            current = levels.get(td.current) if td.current is not None else None
            steady = td.steady(max(levels.values(), default=-127.0), current)
            before = (td.current, td._challenger, td._challenger_ticks, td._quiet_ticks)
            change = td.update(levels)
            if steady:
                steady_seen += 1
                assert change is None, trial
                assert (td.current, td._challenger, td._challenger_ticks, td._quiet_ticks) == before, trial
        assert trial % 10 or steady_seen  # the check does find the usual ticks


def test_conferences_of_many_sizes_sum_like_reduceat() -> None:
    """Members are summed one after another (not with numpy's reduceat): the same float32 sums."""
    rng = np.random.default_rng(3)
    m: Mixer[int] = Mixer()
    sizes = [3, 5, 5, 4, 17, 3, 8]
    start = 0
    groups = []
    for k in sizes:
        groups.append(list(range(start, start + k)))
        start += k
    for p in range(start):
        m.add_port(p)
    for g in groups:
        m.connect_all(g)
    m.set_tx(4, False)  # a member that hears nothing
    m.apply()
    inputs = rng.integers(-20000, 20000, (m.capacity, 160)).astype(np.int16)
    out, slots = m.tick_slots(inputs)
    x = inputs.astype(np.float32)
    for row, s in enumerate(slots.tolist()):
        group = next(g for g in groups if s in g)
        total = np.add.reduceat(x[[m.slot(p) for p in group]], [0], axis=0)[0]
        assert np.array_equal(out[row], np.clip(np.rint(total - x[s]), -32768, 32767).astype(np.int16))
    assert m.slot(4) not in slots.tolist()
