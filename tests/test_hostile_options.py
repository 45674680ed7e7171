"""Plain mistakes in generation options and instructions (issue 16, class 9): each is a typed error raised by
rgpt_rt that names the argument, or, for numpy integers and stop=None, simply accepted."""

import numpy as np
import pytest

from rgpt_rt import GenerationConfig
from rgpt_rt.errors import PromptError
from rgpt_rt.prompts import build_prompt, count_regions, refer_instruction

H, W = 60, 80
FRAME = np.full((H, W, 3), 128, np.uint8)
BOX = (10, 10, 40, 40)
INSTR = "Provide a short description of <region>."


@pytest.mark.parametrize("seed", [-1, 1.5, "abc", True, [1], 2**64])
def test_invalid_seed_is_an_error_naming_seed(seed):
    with pytest.raises((ValueError, TypeError), match="seed"):
        GenerationConfig(seed=seed)


def test_valid_seeds_including_numpy_integers_are_accepted():
    assert GenerationConfig(seed=np.int64(7)).seed == 7
    assert type(GenerationConfig(seed=np.uint32(7)).seed) is int
    assert GenerationConfig(seed=0).seed == 0 and GenerationConfig(seed=None).seed is None


@pytest.mark.parametrize("value", [np.int64(5), np.int32(5), np.uint16(5)])
def test_numpy_integers_are_accepted_for_integer_options(value):
    cfg = GenerationConfig(max_new_tokens=value, top_k=value)
    assert cfg.max_new_tokens == 5 and type(cfg.max_new_tokens) is int
    assert cfg.top_k == 5 and type(cfg.top_k) is int


def test_stop_none_means_no_stop_strings():
    assert GenerationConfig(stop=None).stop == ()
    assert GenerationConfig(stop="x").stop == ("x",)
    assert GenerationConfig(stop=["a", "b"]).stop == ("a", "b")


@pytest.mark.parametrize("stop", [[1], ["ok", None], 5, b"stop", [b"x"]])
def test_stop_that_is_not_strings_is_an_error_naming_stop(stop):
    with pytest.raises((ValueError, TypeError), match="stop"):
        GenerationConfig(stop=stop)


@pytest.mark.parametrize(
    "field,value",
    [
        ("max_new_tokens", True),
        ("max_new_tokens", 2.0),
        ("max_new_tokens", "8"),
        ("top_k", 1.5),
        ("top_k", False),
        ("temperature", "abc"),
        ("temperature", float("inf")),
        ("temperature", None),
        ("top_p", "0.5"),
        ("top_p", None),
        ("repetition_penalty", "1.1"),
        ("repetition_penalty", float("inf")),
        ("ignore_eos", "yes"),
    ],
)
def test_option_of_the_wrong_type_is_an_error_naming_the_option(field, value):
    with pytest.raises((ValueError, TypeError), match=field):
        GenerationConfig(**{field: value})


def test_numpy_floats_are_accepted_for_float_options():
    cfg = GenerationConfig(temperature=np.float32(0.5), top_p=np.float64(0.9), repetition_penalty=np.float32(1.1))
    assert type(cfg.temperature) is float and type(cfg.top_p) is float and type(cfg.repetition_penalty) is float


@pytest.mark.parametrize("instruction", [123, None, b"Describe <region>.", ["Describe <region>."]])
def test_instruction_that_is_not_a_string_is_a_prompt_error(instruction):
    with pytest.raises(PromptError, match="instruction"):
        count_regions(instruction)
    with pytest.raises(PromptError, match="instruction"):
        build_prompt([(instruction, None)], "vicuna_v1")


@pytest.mark.parametrize("turn", [("q", 5), ("q",), "q", ("q", "a", "b"), None])
def test_history_turn_that_is_not_a_pair_of_strings_is_a_prompt_error(turn):
    with pytest.raises(PromptError, match="history|turn"):
        build_prompt([turn, ("next", None)], "vicuna_v1")


@pytest.mark.parametrize("expression", [None, 42, ["the car"]])
def test_refer_expression_that_is_not_a_string_is_a_prompt_error(expression):
    with pytest.raises(PromptError, match="expression"):
        refer_instruction(2, expression)


# ---- the same mistakes through the public API: typed errors, and the numpy integers accepted ----------------


@pytest.mark.parametrize(
    "call,pattern",
    [
        (lambda rt: rt.ask(FRAME, 123, BOX), "instruction"),
        (lambda rt: rt.ask(FRAME, INSTR, BOX, seed=-1), "seed"),
        (lambda rt: rt.ask(FRAME, INSTR, BOX, seed="abc"), "seed"),
        (lambda rt: rt.ask(FRAME, INSTR, BOX, temperature="hot"), "temperature"),
        (lambda rt: rt.ask(FRAME, INSTR, BOX, stop=[3]), "stop"),
        (lambda rt: rt.ask(FRAME, INSTR, BOX, history=[("What is it?", 7)]), "history"),
        (lambda rt: rt.refer(FRAME, [BOX, (0, 0, 5, 5)], None), "expression"),
        (lambda rt: rt.chat(FRAME, BOX).ask(None), "instruction"),
        (lambda rt: rt.ask(FRAME, INSTR, ("a", 0, 10, 10)), "box coordinate"),
        (lambda rt: rt.ask(FRAME, INSTR, {"size": [H, W], "counts": 5}), "counts"),
    ],
    ids=["instruction", "seed-negative", "seed-str", "temperature", "stop", "history", "refer", "chat", "box", "rle"],
)
def test_plain_mistakes_through_the_runtime_are_typed_errors_raised_by_rgpt_rt(rt_llava, call, pattern):
    from rgpt_rt.errors import RgptError

    with pytest.raises((RgptError, ValueError, TypeError), match=pattern) as info:
        call(rt_llava)
    # raised by rgpt_rt itself (not numpy, re or Python deep inside), so the message is ours
    assert "rgpt_rt" in str(info.traceback[-1].path), info.traceback[-1]


def test_numpy_integer_max_new_tokens_and_stop_none_work_end_to_end(rt_llava):
    a = rt_llava.generate(FRAME, INSTR, BOX, max_new_tokens=np.int64(3), stop=None)
    b = rt_llava.generate(FRAME, INSTR, BOX, max_new_tokens=3)
    assert a.token_ids == b.token_ids and len(a.token_ids) <= 3
