"""The emulator's stand-in engines: deterministic and plausible, within the documented shapes."""

from airflow_batch_provider.emulator.engines import ItemFailure, run

REVIEW = ("I bought the Sony WH-1000XM5 for $349 from Amazon on March 3, 2024. Dr. Maria Lopez "
          "recommended it. Shipping to London took 2 days and the sound is fantastic. Battery life "
          "dropped 15% after a month, which is disappointing. Contact me at maria@example.com.")


def test_extract_finds_each_common_kind_with_offsets():
    entities = {"product": "the product bought", "price": "price paid", "brand": "brand or company",
                "person": "name of the person", "date": "purchase date", "city": "city",
                "email": "email address", "drop": "percentage change"}
    found = run({"model": "extract", "text": REVIEW, "entities": entities})["entities"]
    by_type = {}
    for entity in found:
        by_type.setdefault(entity["type"], []).append(entity["text"])
        assert REVIEW[entity["start"]:entity["end"]] == entity["text"]
        assert entity["text"] in entity["context"] and 0 < entity["confidence"] <= 1
    assert "Sony WH-1000XM5" in by_type["product"]
    assert by_type["price"] == ["$349"]
    assert {"Sony", "Amazon"} <= set(by_type["brand"])
    assert "Dr. Maria Lopez" in by_type["person"]
    assert by_type["date"] == ["March 3, 2024"]
    assert by_type["city"] == ["London"]
    assert by_type["email"] == ["maria@example.com"]
    assert by_type["drop"] == ["15%"]


def test_extract_sample_spelling_matches_the_docs_sample():
    text = "Apple Inc. reported Q1 revenue of $94.8B. CEO Tim Cook made the announcement on Feb 1st."
    found = run({"model": "extract", "text": text,
                 "entities": {"company": "Name of the company", "revenue": "Revenue figure",
                              "ceo": "Name of the CEO"}}, entity_spelling="value")["entities"]
    assert [(e["type"], e["value"]) for e in found] == \
        [("company", "Apple Inc."), ("revenue", "$94.8B"), ("ceo", "Tim Cook")]
    assert set(found[0]) == {"type", "value", "score"}


def test_summarize_bullets_and_max_tokens():
    text = ("The new firmware fixes the battery drain reported by many users. It also adds a dark "
            "mode. Reviewers praised the update. The battery now lasts two full days for most users. "
            "Some users still report the battery drain after the update.")
    bullets = run({"model": "summarize", "text": text, "instructions": "Use bullet points."})
    assert bullets["summary"].startswith("• ") and bullets["input_chars"] == len(text)
    assert bullets["output_chars"] == len(bullets["summary"])
    assert "battery" in bullets["summary"].lower()
    short = run({"model": "summarize", "text": text, "max_tokens": 4})["summary"]
    assert len(short.split()) <= 3 and short.endswith("…")
    assert run({"model": "summarize", "text": text}) == run({"model": "summarize", "text": text})


def test_classify_scores_are_a_distribution_and_follow_the_rubrics():
    labels = [{"name": "Positive", "rubric": "Does this text express satisfaction, praise, or approval?"},
              {"name": "Negative", "rubric": "Does this text express dissatisfaction, complaints, or criticism?"},
              {"name": "Shipping", "rubric": "Does the text talk about shipping or delivery?"}]
    happy = run({"model": "classify", "text": "Fantastic quality, I love it!", "labels": labels})
    angry = run({"model": "classify", "text": "It broke after a day. Terrible, I want a refund.",
                 "labels": labels})
    shipping = run({"model": "classify", "text": "The shipping was on time and delivery was quick.",
                    "labels": labels})
    assert (happy["top_label"], angry["top_label"]) == ("Positive", "Negative")
    assert shipping["scores"]["Shipping"] > shipping["scores"]["Negative"]
    for result in (happy, angry, shipping):
        assert abs(sum(result["scores"].values()) - 1) < 1e-3
        assert result["reasoning"] and [label["label"] for label in result["labels"]] == ["Positive", "Negative", "Shipping"]
    assert "not happy" not in run({"model": "classify", "text": "I am not happy", "labels": labels})["top_label"]
    assert run({"model": "classify", "text": "I am not happy", "labels": labels})["top_label"] == "Negative"


def test_item_failures():
    import pytest
    for body in ({"model": "summarize"}, {"model": "summarize", "text": " "},
                 {"model": "extract", "text": "x", "entities": {}},
                 {"model": "classify", "text": "x", "labels": [{"name": "a"}]}):
        with pytest.raises(ItemFailure) as info:
            run(body)
        assert info.value.code == "invalid_request"
