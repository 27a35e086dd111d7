"""pipeline.sentences: segmentation rules, whitespace, language codes, agreement with the gold."""

from __future__ import annotations

import pytest

from pipeline import sentences

GOLD = "extract_text/sentences_gold.txt"


@pytest.mark.parametrize(
    ("paragraph", "expected"),
    [
        (
            "Dr. Smith moved to Washington, D.C. in 1998. He later taught there.",
            ["Dr. Smith moved to Washington, D.C. in 1998.", "He later taught there."],
        ),
        (
            "The U.S. economy grew by 2.5% in 2019. Growth slowed to 2.2% next year.",
            ["The U.S. economy grew by 2.5% in 2019.", "Growth slowed to 2.2% next year."],
        ),
        (
            "Many fruits, e.g. apples, keep well. Others, i.e. soft ones, do not.",
            ["Many fruits, e.g. apples, keep well.", "Others, i.e. soft ones, do not."],
        ),
        (
            'She asked, "Is this the road to St. Albans?" Nobody answered.',
            ['She asked, "Is this the road to St. Albans?"', "Nobody answered."],
        ),
        (
            "He paused... and then walked away. The door closed.",
            ["He paused... and then walked away.", "The door closed."],
        ),
        (
            "The experiment used approx. 500 samples. See Vol. 12, pp. 45–67. Done.",
            ["The experiment used approx. 500 samples.", "See Vol. 12, pp. 45–67.", "Done."],
        ),
    ],
)
def test_english_abbreviations_decimals_quotes_ellipses(paragraph, expected):
    assert sentences.split_sentences(paragraph, language="en") == expected


def test_non_english_rules_follow_the_language():
    assert sentences.split_sentences(
        "В 1812 г. армия Наполеона вошла в Москву. Через месяц она отступила.", language="ru"
    ) == ["В 1812 г. армия Наполеона вошла в Москву.", "Через месяц она отступила."]
    assert sentences.split_sentences(
        "Der Hund bellt, z. B. wenn es klingelt. Das ist normal.", language="de"
    ) == ["Der Hund bellt, z. B. wenn es klingelt.", "Das ist normal."]
    # A language sentencex has no rules for falls back instead of failing.
    assert sentences.split_sentences("Labdīn. Kai īt?", language="ltg") == ["Labdīn.", "Kai īt?"]


def test_every_sentence_is_one_clean_line():
    paragraph = "First\u00a0line\nwraps here.\u2028Second\tone.\r\nThird\x0bone."
    result = sentences.split_sentences(paragraph, language="en")
    assert result == ["First line wraps here.", "Second one.", "Third one."]
    assert sentences.split_sentences("  \n\t ", language="en") == []


def test_split_paragraphs_never_joins_across_paragraphs():
    assert sentences.split_paragraphs(["Heading without stop", "A sentence. Another."]) == [
        "Heading without stop",
        "A sentence.",
        "Another.",
    ]


@pytest.mark.parametrize(
    ("given", "code"),
    [
        ("English", "en"),
        ("en-GB", "en"),
        ("pt_BR", "pt"),
        ("RU", "ru"),
        ("", "en"),
        (None, "en"),
        ("Klingon Standard", "en"),
    ],
)
def test_language_code(given, code):
    assert sentences.language_code(given) == code


def test_agreement_scores_spans():
    blocks = [("en", ["One two.", "Three four."]), ("en", ["Five.", "Six."])]

    def one_sentence(paragraph, language):
        return [paragraph]

    scores = sentences.agreement(blocks, one_sentence)
    # No sentence found exactly: two predictions, four gold sentences, nothing right.
    assert scores == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "paragraphs_exact": 0.0}

    def oracle(paragraph, language):
        return [block for lang, gold in blocks for block in gold if block in paragraph]

    assert sentences.agreement(blocks, oracle)["f1"] == 1.0


def test_gold_sample_agreement(fixtures_dir):
    blocks = sentences.parse_gold_sample((fixtures_dir / GOLD).read_text(encoding="utf-8"))
    assert len(blocks) >= 50
    assert {language for language, _ in blocks} >= {"en", "de", "fr", "es", "ru", "uk"}
    scores = sentences.agreement(
        blocks, lambda paragraph, language: sentences.split_sentences(paragraph, language=language)
    )
    # docs/extract_text.md quotes these figures (F1 0.96, 96% of paragraphs exact).
    assert scores["f1"] >= 0.95
    assert scores["paragraphs_exact"] >= 0.94


def test_gold_sample_format_errors():
    with pytest.raises(ValueError, match="must start with"):
        sentences.parse_gold_sample("no header\nsentence.")
