import pytest

from gancore.data import DataError, TextLines, Vocabulary


def test_vocabulary_round_trip(tmp_path):
    vocab = Vocabulary.build([["b", "a"], ["a"]])
    assert vocab.itos[:4] == list(Vocabulary.SPECIALS) and vocab.itos[4] == "a"  # most frequent first
    ids = vocab.encode(["a", "zzz", "b"], max_len=7)
    assert ids.tolist()[0] == Vocabulary.BOS and ids.tolist()[4] == Vocabulary.EOS
    assert ids.tolist()[5:] == [Vocabulary.PAD] * 2
    assert vocab.decode(ids) == ["a", "<unk>", "b"]
    vocab.save(str(tmp_path / "v.txt"))
    assert Vocabulary.load(str(tmp_path / "v.txt")).itos == vocab.itos


def test_encode_truncates_to_max_len():
    vocab = Vocabulary(["x"])
    assert len(vocab.encode(["x"] * 10, max_len=4)) == 4


def test_text_lines_word_and_char(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("the cat sat\n\n the dog \n")
    words = TextLines(str(path))
    assert len(words) == 2 and words.max_len == 5
    assert words.vocab.decode(words[1]["tokens"]) == ["the", "dog"] and words[1]["length"] == 4
    chars = TextLines(str(path), level="char", max_len=6)
    assert chars.vocab.decode(chars[1]["tokens"]) == list("the d")  # <bos> + 5 characters


def test_text_with_a_given_vocabulary(tmp_path):
    (tmp_path / "v.txt").write_text("cat\n")
    (tmp_path / "t.txt").write_text("cat dog\n")
    ds = TextLines(str(tmp_path / "t.txt"), vocab=str(tmp_path / "v.txt"))
    assert ds.vocab.decode(ds[0]["tokens"]) == ["cat", "<unk>"]


def test_text_errors(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        TextLines(str(tmp_path / "missing.txt"))
    with pytest.raises(DataError, match="not a file"):
        TextLines(str(tmp_path))
    (tmp_path / "blank.txt").write_text("\n  \n")
    with pytest.raises(DataError, match="no non-blank line"):
        TextLines(str(tmp_path / "blank.txt"))
    (tmp_path / "t.txt").write_text("a\n")
    with pytest.raises(DataError, match="level"):
        TextLines(str(tmp_path / "t.txt"), level="byte")


def test_undecodable_bytes_are_replaced(tmp_path):
    (tmp_path / "t.txt").write_bytes(b"caf\xe9 ok\n")
    ds = TextLines(str(tmp_path / "t.txt"))
    assert ds.vocab.decode(ds[0]["tokens"]) == ["caf\ufffd", "ok"]
