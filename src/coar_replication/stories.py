"""A TinyStories-like corpus from a seeded grammar, and a word-level tokenizer for it.

The embedded default trains a tiny GPT-2 on stories that this module writes:
short plots with named characters, their objects, places and feelings. A
character's name, pronoun, object and place come back later in the story, so
predicting them needs attention to earlier tokens (the heads have work to do),
while the sentence frames are predictable from the previous few words.

Story i of a corpus is a pure function of (seed, i), like the ablation masks.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np

from coar.atomic import atomic_path

GIRLS = ["Lily", "Mia", "Sara", "Emma", "Lucy", "Anna", "Zoe", "Ruby", "Ella", "Rose"]
BOYS = ["Tom", "Ben", "Max", "Sam", "Leo", "Jack", "Tim", "Finn", "Noah", "Joe"]
ANIMALS = ["cat", "dog", "bird", "frog", "bunny", "duck", "bear", "fox"]
OBJECTS = ["ball", "kite", "book", "hat", "doll", "boat", "cup", "drum", "box", "car"]
COLOURS = ["red", "blue", "green", "yellow", "big", "little", "shiny", "soft"]
PLACES = ["park", "garden", "beach", "forest", "house", "lake", "school", "farm"]
GOOD = ["happy", "glad", "proud", "excited"]
BAD = ["sad", "angry", "scared", "worried"]
ACTIONS = ["play", "run", "jump", "sing", "dance", "swim"]

PAD, BOS, EOS = "<pad>", "<bos>", "<eos>"
SPECIALS = (PAD, BOS, EOS)
_WORDS = re.compile(r"\w+|[^\w\s]")


def _pick(rng: np.random.Generator, options: Sequence[str]) -> str:
    return options[int(rng.integers(len(options)))]


def _character(rng: np.random.Generator, exclude: str = "") -> tuple[str, str, str]:
    """(name, subject pronoun, possessive) of a child other than `exclude`."""
    while True:
        girl = bool(rng.integers(2))
        name = _pick(rng, GIRLS if girl else BOYS)
        if name != exclude:
            return (name, "she", "her") if girl else (name, "he", "his")


def story(seed: int, index: int) -> str:
    """Story `index` of the corpus drawn with `seed`."""
    rng = np.random.default_rng([int(seed), int(index)])
    hero, he, his = _character(rng)
    friend, _, _ = _character(rng, exclude=hero)
    thing, colour, place = _pick(rng, OBJECTS), _pick(rng, COLOURS), _pick(rng, PLACES)
    animal, action = _pick(rng, ANIMALS), _pick(rng, ACTIONS)
    good, bad = _pick(rng, GOOD), _pick(rng, BAD)
    He = he.capitalize()
    opening = [
        f"Once upon a time, there was a little {'girl' if he == 'she' else 'boy'} named {hero}.",
        f"{He} had a {colour} {thing}.",
    ]
    plot = int(rng.integers(4))
    if plot == 0:  # lost and found
        middle = [
            f"One day, {hero} went to the {place} with {his} {thing}.",
            f"Then the {thing} was gone and {hero} was {bad}.",
            f'{friend} said, "I will help you find your {thing}."',
            f"They found the {colour} {thing} under a tree.",
        ]
        ending = f'{hero} was {good} and said, "Thank you, {friend}!"'
    elif plot == 1:  # sharing
        middle = [
            f"One day, {hero} met {friend} at the {place}.",
            f'{friend} saw the {thing} and said, "Can I {action} with your {thing}?"',
            f"{friend} was {bad}, so {hero} gave the {thing} to {friend}.",
        ]
        ending = f"{hero} and {friend} were {good} friends."
    elif plot == 2:  # an animal in trouble
        middle = [
            f"One day, {hero} saw a {animal} at the {place}.",
            f"The {animal} was stuck and {bad}.",
            f"{hero} put down {his} {thing} and helped the {animal}.",
            f'{friend} said, "You are kind, {hero}."',
        ]
        ending = f"The {animal} and {hero} were {good}."
    else:  # a trip and a storm
        middle = [
            f"One day, {hero} and {friend} went to the {place}.",
            f"They wanted to {action}, but it began to rain.",
            f"{friend} was {bad}, so {hero} held {his} {thing} and they ran home.",
        ]
        ending = f"At home, {hero} and {friend} were {good} and dry."
    return " ".join(opening + middle + [ending])


def stories(seed: int, start: int, stop: int) -> list[str]:
    """Stories start..stop-1 of the corpus drawn with `seed`."""
    return [story(seed, i) for i in range(start, stop)]


def words(text: str) -> list[str]:
    """Words and punctuation marks, in order."""
    return _WORDS.findall(text)


class WordTokenizer:
    """Word-level tokenizer: one id per word or punctuation mark, plus <pad>, <bos>, <eos>.

    ``encode`` wraps a story as <bos> words <eos>; sequences are right-padded with
    <pad> and come with an attention mask (1 = real token).
    """

    def __init__(self, vocab: Sequence[str]):
        if tuple(vocab[: len(SPECIALS)]) != SPECIALS:
            raise ValueError(f"vocabulary must start with {SPECIALS}, got {tuple(vocab[:3])}")
        if len(set(vocab)) != len(vocab):
            raise ValueError("vocabulary has duplicate entries")
        self.vocab = list(vocab)
        self.ids = {word: i for i, word in enumerate(self.vocab)}
        self.pad_id, self.bos_id, self.eos_id = (self.ids[s] for s in SPECIALS)

    @classmethod
    def fit(cls, texts: Iterable[str]) -> WordTokenizer:
        """Vocabulary of every word in `texts`, most frequent first (ties alphabetically)."""
        counts = Counter(w for text in texts for w in words(text))
        return cls([*SPECIALS, *sorted(counts, key=lambda w: (-counts[w], w))])

    def __len__(self) -> int:
        return len(self.vocab)

    def encode(self, text: str) -> list[int]:
        unknown = sorted({w for w in words(text) if w not in self.ids})
        if unknown:
            raise KeyError(f"words outside the tokenizer's vocabulary: {unknown[:10]}")
        return [self.bos_id, *(self.ids[w] for w in words(text)), self.eos_id]

    def decode(self, ids: Iterable[int]) -> str:
        return " ".join(self.vocab[i] for i in ids if i != self.pad_id)

    def encode_batch(self, texts: Sequence[str], max_tokens: int) -> dict[str, np.ndarray]:
        """Right-padded int64 ``input_ids`` and ``attention_mask``, both (len(texts), T)
        with T the longest sequence; longer stories are truncated to `max_tokens`."""
        encoded = [self.encode(text)[:max_tokens] for text in texts]
        width = max(len(ids) for ids in encoded)
        input_ids = np.full((len(encoded), width), self.pad_id, dtype=np.int64)
        attention_mask = np.zeros((len(encoded), width), dtype=np.int64)
        for row, ids in enumerate(encoded):
            input_ids[row, : len(ids)] = ids
            attention_mask[row, : len(ids)] = 1
        return {"input_ids": input_ids, "attention_mask": attention_mask}

    def save(self, path) -> None:
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps({"vocab": self.vocab}, indent=0) + "\n")

    @classmethod
    def load(cls, path) -> WordTokenizer:
        with open(path) as f:
            return cls(json.load(f)["vocab"])
