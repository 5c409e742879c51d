"""The montage optimiser: text units, retrieval, exact DP, beam for no-reuse, incremental re-plan."""
import itertools
import json

import numpy as np
import pytest

from montage.errors import MontageError
from montage.plan import (Plan, PlanConfig, ShotTable, _beam, _viterbi, plan, transition_costs,
                          unary_costs)
from montage.text import Unit, keywords, reading_seconds, sentences, split_units, stem
from montage.bench import SynthShot


FakeShot = SynthShot  # the benchmark's minimal shot record serves the tests too


def make_table(n, seed=0, dim=16, per_source=3):
    rng = np.random.default_rng(seed)
    shots = []
    for i in range(n):
        st = (i % per_source) * 10.0
        shots.append(FakeShot(i + 1, f"/footage/clip {i // per_source}.mp4", st, st + rng.uniform(2, 8),
                              tuple(rng.uniform([20, -30, -30], [80, 30, 30])), rng.uniform(0.2, 1),
                              rng.uniform(0.3, 1), rng.uniform(0, 0.6), str(rng.choice(["static", "pan", "zoom"])),
                              f"shot number {i}"))
    v = rng.normal(size=(n, dim)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return shots, v


def unit_vectors(v, rows, rng, noise=0.3):
    u = v[rows] + noise * rng.normal(size=(len(rows), v.shape[1])).astype(np.float32)
    return u / np.linalg.norm(u, axis=1, keepdims=True)


# -- text --------------------------------------------------------------------------------
def test_units_from_markdown():
    text = ("# Harbour at dawn\n\nThe sun rises over the **calm** sea. Dr. Smith walks to the "
            "[pier](http://x).\n\n- Gulls circle the boats\n* 2. Waves crash on the rocks\n\n"
            "```\ncode is skipped\n```\n")
    units = split_units(text)
    assert [(u.kind, u.text) for u in units] == [
        ("title", "Harbour at dawn"), ("text", "The sun rises over the calm sea."),
        ("text", "Dr. Smith walks to the pier."), ("text", "Gulls circle the boats"),
        ("text", "Waves crash on the rocks")]
    assert [u.paragraph for u in units][1:3] == [1, 1]


def test_markdown_drops_tags_but_keeps_angle_brackets_in_text():
    units = split_units("Scores rise when x <3 and y > 2. The <b>red</b> door<!-- note --> opens.")
    assert [u.text for u in units] == ["Scores rise when x <3 and y > 2.", "The red door opens."]


def test_long_sentence_cut_into_clauses():
    s = ("The old fisherman pulls his heavy nets out of the cold grey water, while the gulls "
         "scream above the harbour and the first light touches the roofs of the sleeping town.")
    units = split_units(s, max_words=15)
    assert len(units) >= 2 and all(len(u.text.split()) <= 22 for u in units)
    assert " ".join(u.text for u in units).split() == s.split()


def test_sentences_and_keywords():
    assert sentences("It works, e.g. here. Mr. X left! Did he? Yes") == \
        ["It works, e.g. here.", "Mr. X left!", "Did he?", "Yes"]
    assert [stem(w) for w in ("running", "cities", "horses", "boxes", "walked")] == \
        ["run", "city", "horse", "box", "walk"]
    assert keywords("The dogs are running in the cities") == ["dog", "run", "city"]
    assert reading_seconds("one two three") >= 1.5
    assert reading_seconds(" ".join(["word"] * 40)) == pytest.approx(40 * 60 / 160 + 0.4)


@pytest.mark.parametrize("text", ["", "   \n\n", "# Only a heading\n", "```\nx\n```"])
def test_empty_text_is_an_error(text):
    with pytest.raises(MontageError, match="empty"):
        split_units(text)


# -- exact DP ------------------------------------------------------------------------------
def test_viterbi_matches_brute_force():
    rng = np.random.default_rng(3)
    for trial in range(20):
        sizes = rng.integers(1, 4, size=4)
        unary = [rng.uniform(0, 2, size=k) for k in sizes]
        trans = [None] + [rng.uniform(0, 1, size=(a, b)) for a, b in zip(sizes[:-1], sizes[1:])]
        ids = [np.arange(k) + 10 * s for s, k in enumerate(sizes)]
        if trial % 2:  # some shots shared between neighbouring slots
            ids = [np.arange(k) for k in sizes]
        init = rng.uniform(0, 1, size=sizes[0])
        path, cost = _viterbi(unary, trans, ids, init)
        best = np.inf
        for p in itertools.product(*[range(k) for k in sizes]):
            if any(ids[s][p[s]] == ids[s + 1][p[s + 1]] for s in range(3)):
                continue
            c = init[p[0]] + sum(unary[s][p[s]] for s in range(4)) + \
                sum(trans[s][p[s - 1], p[s]] for s in range(1, 4))
            best = min(best, c)
        assert cost == pytest.approx(best)


def test_beam_never_reuses_a_shot_and_beats_greedy():
    rng = np.random.default_rng(5)
    # 6 slots competing for the same 4 good shots + 4 mediocre ones.
    n_slots, ids = 6, np.arange(8)
    unary = [np.r_[rng.uniform(0, 0.2, 4), rng.uniform(0.8, 1.0, 4)] for _ in range(n_slots)]
    trans = [None] + [rng.uniform(0, 0.1, size=(8, 8)) for _ in range(n_slots - 1)]
    src = [np.arange(8) for _ in range(n_slots)]
    path, cost = _beam(unary, trans, [ids] * n_slots, src, np.zeros(8), set(), [], width=64, gap=1,
                       w_source=0.0)
    assert len(set(path)) == n_slots
    # Exhaustive optimum over permutations without reuse.
    best = min(sum(unary[s][p[s]] for s in range(n_slots)) +
               sum(trans[s][p[s - 1], p[s]] for s in range(1, n_slots))
               for p in itertools.permutations(range(8), n_slots))
    assert cost == pytest.approx(best, rel=1e-9)


# -- planning ------------------------------------------------------------------------------
def test_plan_picks_matching_shots_in_order_without_repeats():
    shots, v = make_table(60, seed=1)
    table = ShotTable.from_shots(shots, v)
    rng = np.random.default_rng(2)
    truth = rng.choice(60, size=12, replace=False)
    units = [Unit(text=f"unit {i}", duration=3.0) for i in range(12)]
    p = plan(units, table, unit_vectors(v, truth, rng, noise=0.15), PlanConfig(pace="slow"))
    chosen = [u.shots[0].shot_id for u in p.units]
    hits = sum(c == int(t) + 1 for c, t in zip(chosen, truth))
    assert hits >= 10
    ids = [s.shot_id for s in p.slots()]
    assert len(ids) == len(set(ids))
    starts = [u.start for u in p.units]
    assert starts == sorted(starts) and p.units[0].start == 0.0
    assert p.duration == pytest.approx(36.0, abs=1 / 24)
    for u in p.units:  # slots tile their unit exactly
        assert u.shots[0].start == u.start and u.shots[-1].end == u.end
        for s in u.shots:
            assert s.out_point - s.in_point + s.hold == pytest.approx(s.duration, abs=1e-6)
            assert "semantic" in s.costs and "total" in s.costs


def test_duplicate_demand_forces_beam_and_no_reuse():
    shots, v = make_table(8, seed=4)
    table = ShotTable.from_shots(shots, v)
    rng = np.random.default_rng(0)
    # Every unit wants shot 1: Viterbi would pick it every time (not consecutive? it is forbidden
    # consecutively, so it alternates) - the reuse rule must spread the units over other shots.
    units = [Unit(text=f"u{i}", duration=2.0) for i in range(6)]
    uv = unit_vectors(v, np.zeros(6, dtype=int), rng, noise=0.05)
    p = plan(units, table, uv, PlanConfig(pace="slow", top_k=8))
    ids = [s.shot_id for s in p.slots()]
    assert len(ids) == len(set(ids)) == 6
    assert p.solver == "beam"


def test_too_few_shots_is_a_clear_error():
    shots, v = make_table(2, seed=4)
    table = ShotTable.from_shots(shots, v)
    units = [Unit(text=f"u{i}", duration=2.0) for i in range(4)]
    with pytest.raises(MontageError, match="fewer usable shots"):
        plan(units, table, np.repeat(v[:1], 4, axis=0), PlanConfig(pace="slow"))


def test_no_good_match_and_titles_are_said_in_the_plan():
    shots, v = make_table(20, seed=6)
    table = ShotTable.from_shots(shots, v)
    away = -v.mean(0)
    away /= np.linalg.norm(away)
    units = [Unit(text="Chapter one", kind="title"), Unit(text="nothing like it", duration=2.0)]
    uv = np.stack([away, away])
    p = plan(units, table, uv, PlanConfig(min_similarity=0.9))
    assert p.units[0].shots[0].kind == "title" and p.units[0].end == pytest.approx(2.0)
    assert "best available" in p.units[1].note and p.units[1].shots[0].kind == "shot"
    assert [u.match for u in p.units] == ["title", "weak"]
    p2 = plan(units, table, uv, PlanConfig(min_similarity=0.9, fallback="title"))
    assert p2.units[1].shots[0].kind == "title" and "title card" in p2.units[1].note
    assert p2.units[1].match == "none" and Plan.from_dict(p2.to_dict()).units[1].match == "none"


def test_pins_and_empty_library():
    shots, v = make_table(10, seed=7)
    table = ShotTable.from_shots(shots, v)
    units = [Unit(text="a", duration=2.0, pin=5), Unit(text="b", duration=2.0)]
    p = plan(units, table, v[:2])
    assert p.units[0].shots[0].shot_id == 5
    with pytest.raises(MontageError, match="pinned to shot 99"):
        plan([Unit(text="a", duration=2.0, pin=99)], table, v[:1])
    empty = ShotTable.from_shots([], np.zeros((0, 16), np.float32))
    p = plan([Unit(text="a", duration=2.0)], empty, v[:1])
    assert p.units[0].shots[0].kind == "title" and "no footage" in p.units[0].note


def test_idioms_pace_and_movement():
    shots, v = make_table(80, seed=8)
    table = ShotTable.from_shots(shots, v)
    rng = np.random.default_rng(1)
    units = [Unit(text=f"u{i}", duration=8.0) for i in range(4)]
    uv = unit_vectors(v, rng.choice(80, 4, replace=False), rng, noise=2.0)  # weak semantics
    n = {pace: len(plan(units, table, uv, PlanConfig(pace=pace)).slots()) for pace in ("slow", "normal", "fast")}
    assert n["slow"] < n["normal"] < n["fast"]
    more = plan(units, table, uv, PlanConfig(movement="more", w_movement=3.0))
    less = plan(units, table, uv, PlanConfig(movement="less", w_movement=3.0))
    motion = {int(s.id): s.motion for s in shots}
    mean = lambda p: np.mean([motion[s.shot_id] for s in p.slots()])  # noqa: E731
    assert mean(more) > mean(less) + 0.1


def test_cost_terms():
    shots, v = make_table(4, seed=9)
    for s in shots:
        s.source = "/same.mp4"
    shots[0].start, shots[0].end, shots[1].start, shots[1].end = 0.0, 3.0, 3.2, 6.0
    shots[1].lab = shots[0].lab
    shots[2].brightness = 0.02
    table = ShotTable.from_shots(shots, v)
    t = transition_costs(table, np.array([0]), np.array([1, 2]), PlanConfig())
    assert t["jump"][0, 0] > 0 and t["source"][0, 0] > 0 and t["colour"][0, 0] == 0
    u = unary_costs(table, np.array([0, 2]), np.array([0.5, 0.5]), 10.0, PlanConfig())
    assert u["quality"][1] > u["quality"][0] and u["duration"][0] > 0


def test_replan_from_first_changed_unit_and_json_roundtrip(tmp_path):
    shots, v = make_table(300, seed=10)
    table = ShotTable.from_shots(shots, v)
    rng = np.random.default_rng(4)
    truth = rng.choice(300, size=20, replace=False)
    units = [Unit(text=f"unit {i}", duration=3.0) for i in range(20)]
    uv = unit_vectors(v, truth, rng)
    cfg = PlanConfig()
    p1 = plan(units, table, uv, cfg)
    p1.save(tmp_path / "plan.json")
    loaded = Plan.load(tmp_path / "plan.json")
    d = json.loads((tmp_path / "plan.json").read_text())
    assert {"units", "duration"} <= d.keys()
    assert {"text", "start", "end", "shots"} <= d["units"][0].keys()
    assert {"source", "in", "out", "score"} <= d["units"][0]["shots"][0].keys()
    # Same text: nothing re-solved.
    same = plan(units, table, uv, cfg, previous=loaded)
    assert same.replanned_from == 20
    # Edit unit 12: the prefix is kept, the rest re-solved.
    units[12] = Unit(text="an edited sentence", duration=4.0)
    uv[12] = v[int(truth[3])]
    p2 = plan(units, table, uv, cfg, previous=loaded)
    assert p2.replanned_from == 12
    assert [u.to_dict() for u in p2.units[:12]] == [u.to_dict() for u in loaded.units[:12]]
    ids = [s.shot_id for s in p2.slots()]
    assert len(ids) == len(set(ids))
    assert p2.units[13].start == pytest.approx(p1.units[13].start + 1.0)
    # A plan made under other settings is not reused.
    p3 = plan(units, table, uv, PlanConfig(pace="fast"), previous=loaded)
    assert p3.replanned_from == 0


def test_beam_with_source_gap_matches_brute_force():
    rng = np.random.default_rng(11)
    for trial in range(6):
        n_slots, k, gap, w = 5, 4, 4, 0.7
        ids = [rng.choice(8, size=k, replace=False) for _ in range(n_slots)]
        src = [i // 2 for i in ids]                  # two shots per source
        unary = [rng.uniform(0, 1, size=k) for _ in range(n_slots)]
        trans = [None] + [rng.uniform(0, 0.5, size=(k, k)) for _ in range(n_slots - 1)]
        init = rng.uniform(0, 0.3, size=k)
        recent, used = [int(src[0][0]), -1, 7], {int(ids[0][1])}
        path, cost = _beam(unary, trans, ids, src, init, used, recent, width=4096, gap=gap, w_source=w)
        best = np.inf
        for p in itertools.product(range(k), repeat=n_slots):
            chosen = [int(ids[s][p[s]]) for s in range(n_slots)]
            if len(set(chosen)) < n_slots or used & set(chosen):
                continue
            c = init[p[0]] + sum(unary[s][p[s]] for s in range(n_slots)) + \
                sum(trans[s][p[s - 1], p[s]] for s in range(1, n_slots))
            hist = list(recent)
            for s in range(n_slots):
                sk = int(src[s][p[s]])
                c += w * hist[-(gap - 1):-1].count(sk)
                hist.append(sk)
            best = min(best, c)
        assert cost == pytest.approx(best)


def test_replan_reuses_retrieval_of_known_sentences(monkeypatch):
    import montage.plan as mp
    shots, v = make_table(200, seed=12)
    table = ShotTable.from_shots(shots, v)
    rng = np.random.default_rng(5)
    units = [Unit(text=f"sentence {i}", duration=2.0) for i in range(8)]
    uv = unit_vectors(v, rng.choice(200, 8, replace=False), rng)
    p1 = plan(units, table, uv)
    seen = []
    real = mp.retrieve
    monkeypatch.setattr(mp, "retrieve", lambda t, texts, *a: seen.extend(texts) or real(t, texts, *a))
    # Move sentence 6 to the front and add a new one: only the new sentence is retrieved.
    order = [6, 0, 1, 2, 3, 4, 5, 7]
    moved = [units[i] for i in order] + [Unit(text="a new sentence", duration=2.0)]
    uv2 = np.concatenate([uv[order], v[:1]])
    p2 = plan(moved, table, uv2, previous=Plan.from_dict(json.loads(json.dumps(p1.to_dict()))))
    assert seen == ["a new sentence"] and p2.replanned_from == 0
    assert p2.units[0].shots[0].shot_id == p1.units[6].shots[0].shot_id


def test_pace_gives_way_when_the_library_is_small():
    shots, v = make_table(6, seed=13)
    table = ShotTable.from_shots(shots, v)
    units = [Unit(text=f"u{i}", duration=6.0) for i in range(5)]
    p = plan(units, table, v[:5], PlanConfig(pace="fast"))      # fast wants ~3 shots per unit
    assert [len(u.shots) for u in p.units] == [1] * 5
    assert len({s.shot_id for s in p.slots()}) == 5


from hypothesis import given, settings, strategies as st  # noqa: E402

_word = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABC", min_size=1, max_size=8)
_sep = st.sampled_from([" ", ", ", ". ", "; ", "! ", "? ", " and ", ".\n\n", ": ", " e.g. "])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(_word, _sep), min_size=1, max_size=60))
def test_units_keep_every_word_in_order(pieces):
    text = "".join(w + s for w, s in pieces)
    units = split_units(text, max_words=8)
    words = lambda s: [w for w in "".join(c if c.isalnum() else " " for c in s).split()]  # noqa: E731
    assert words(" ".join(u.text for u in units)) == words(text)
    assert all(u.text == u.text.strip() and u.text for u in units)
    assert all(len(u.text.split()) <= 12 for u in units)      # long sentences are cut
