"""The shared prompt fixture varies what a fixed-index bug would hide: the answer is not always A, the
target not always B, and every sample's question is its own."""

from PIL import Image


def test_answers_and_targets_vary_and_name_the_square(make_prompt):
    prompts = [make_prompt(i, n_options=4 + i % 2) for i in range(10)]
    assert {p.answer for p in prompts} >= set("ABCD") and {p.target_letter for p in prompts} >= set("ABCD")
    assert len({p.user_text for p in prompts}) == len(prompts)
    for p in prompts:
        assert p.target_letter != p.answer and {p.answer, p.target_letter} <= set(p.options)
        assert len(set(p.options.values())) == len(p.options)
        with Image.open(p.image) as im:  # the answer's option names the square's colour
            square = Image.new("RGB", (1, 1), p.options[p.answer]).getpixel((0, 0))
            assert square in {c for _, c in im.getcolors()}
