"""MovieLens folders: ``ratings.csv`` + ``movies.csv`` + ``tags.csv`` (ml-latest, ml-25m...),
``ratings.dat`` + ``movies.dat`` [+ ``tags.dat``] (ml-1m, ml-10m; ``::`` separated) or ``u.data`` +
``u.item`` [+ ``u.genre``] (ml-100k; tab / ``|`` separated). Each user is also the collection
(``collection_id = user_id``), ``weight`` is the rating. Items get ``title``, ``genres``
(``|``-separated) and ``tags`` (the item's distinct lower-cased tags, sorted, ``|``-separated).
Without a movies file the items are the rated ids (tags still read). Bad input as in
:mod:`pinsage_model.data.reading`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from pinsage_model.data.checks import InputRules, RowChecker, fail_duplicate_ids
from pinsage_model.data.contracts import ITEMS
from pinsage_model.data.inputs import LoaderError, read_lines
from pinsage_model.data.quarantine import Quarantine
from pinsage_model.data.reading import (
    LoadResult,
    interactions_table,
    note_repeats,
    read_csv,
    read_separated,
    unknown_items,
)

# ml-100k's genre columns when its u.genre file is absent (that file's names, in its order)
ML100K_GENRES = tuple(
    "unknown|Action|Adventure|Animation|Children's|Comedy|Crime|Documentary|Drama|Fantasy|Film-Noir|Horror|"
    "Musical|Mystery|Romance|Sci-Fi|Thriller|War|Western".split("|")
)


# The rating scale of each MovieLens flavour (ml-latest: half stars; ml-1m / ml-100k: 1-5).
_RATING_SCALE = {"ratings.csv": (0.5, 5.0), "ratings.dat": (1.0, 5.0), "u.data": (1.0, 5.0)}


def load_movielens(path: str | Path, rules: InputRules | None = None) -> LoadResult:
    """Load a MovieLens folder (``ratings.csv``, ``ratings.dat`` or ``u.data`` flavour).

    Args:
      path: the folder holding the MovieLens files.
      rules: value rules (future timestamps, timestamp unit).

    Returns:
      :class:`LoadResult` with interactions (user = collection, weight = rating) and items.

    Raises:
      LoaderError: no ratings file, a file unusable as a whole, or a required column is missing.
    """
    rules = rules or InputRules.of()
    path = Path(path)
    if path.is_file():
        raise LoaderError(f"{path}: is a file, expected a MovieLens folder (with ratings.csv, ratings.dat or u.data)")
    if not path.is_dir():
        raise LoaderError(f"{path}: not a folder (expected a MovieLens folder)")
    q = Quarantine()
    fields = ["userId", "movieId", "rating", "timestamp"]
    if (path / "ratings.csv").exists() or (path / "ratings.csv").is_symlink():
        src = path / "ratings.csv"
        read = read_csv(src, fields, q, "MovieLens ratings CSV (userId,movieId,rating,timestamp)")
    elif (path / "ratings.dat").exists():
        src = path / "ratings.dat"
        read = read_separated(src, "::", fields, q, "MovieLens ratings.dat (userId::movieId::rating::timestamp)")
    elif (path / "u.data").exists():
        src = path / "u.data"
        read = read_separated(src, "\t", fields, q, "MovieLens u.data (tab-separated)")
    else:
        raise LoaderError(f"{path}: no MovieLens ratings file (ratings.csv, ratings.dat or u.data)")
    chk = RowChecker(read.df)
    chk.ident("userId", integer=True)
    chk.ident("movieId", integer=True)
    chk.number("rating")
    chk.within("rating", *_RATING_SCALE[src.name], f"the MovieLens {src.name} scale")
    chk.timestamp("timestamp", rules, q, str(src))
    chk.duplicates(["userId", "movieId", "timestamp"], "duplicate rating (same user, movie, timestamp)")
    keep = chk.quarantine(q, str(src), read)
    user = chk.values["userId"][keep].to_numpy(dtype=object)
    movie = chk.values["movieId"][keep].to_numpy(dtype=object)
    note_repeats(q, str(src), user, movie)
    interactions = interactions_table(
        user, movie, chk.values["timestamp"][keep].to_numpy(), user, chk.values["rating"][keep].to_numpy()
    )
    q.record(str(src), read.n_in, interactions.num_rows)
    findings: dict[str, dict] = {}
    sources = {"interactions": str(src)}
    items, items_src = _movielens_items(path, q, interactions, findings)
    if items_src:
        sources["items"] = items_src
        findings.update(unknown_items(interactions, items, items_src, str(src)))
    return LoadResult(interactions, items, None, q.table(), q.counts, findings, sources)


def _movielens_items(path: Path, q: Quarantine, interactions: pa.Table, findings: dict) -> tuple[pa.Table | None, str]:
    if (path / "movies.csv").exists() or (path / "movies.csv").is_symlink():
        src = path / "movies.csv"
        read = read_csv(src, ["movieId", "title", "genres"], q, "MovieLens movies CSV (movieId,title,genres)")
    elif (path / "movies.dat").exists():
        src = path / "movies.dat"
        read = read_separated(src, "::", ["movieId", "title", "genres"], q, "MovieLens movies.dat")
    elif (path / "u.item").exists():
        src = path / "u.item"
        genre_names = _ml100k_genres(path / "u.genre")
        names = ["movieId", "title", "release", "video_release", "url"] + [f"g{i}" for i in range(len(genre_names))]
        read = read_separated(src, "|", names, q, "MovieLens u.item")
        movies = read.df
        flags = movies[names[5:]].to_numpy(dtype=object)
        bad_flag = np.asarray(~np.isin(flags, ["0", "1"]).all(axis=1))
        named = np.where(flags == "1", np.array([g + "|" for g in genre_names], dtype=object), "")
        movies = movies[["movieId", "title"]].assign(
            genres=pd.Series(named.sum(axis=1), dtype="string").str.rstrip("|")
        )
        movies.loc[bad_flag, "genres"] = pd.NA
        read.df = movies
    else:
        # No movies file: the items are the rated ids; tags are still read (or their absence noted).
        ids = pc.unique(interactions["item_id"]).sort()
        findings["movies_file"] = {
            "file": None,
            "status": "missing (movies.csv / movies.dat / u.item): items are the rated ids, without titles or genres",
            "items": len(ids),
        }
        cols = {"item_id": ids}
        tags = _movielens_tags(path, q, findings)
        if tags is not None:
            cols["tags"] = pa.array(
                pd.Series(ids.to_numpy(zero_copy_only=False)).map(tags).to_numpy(dtype=object, na_value=None),
                pa.string(),
            )
        return ITEMS.validate(pa.table(cols), str(path)), ""
    movies = read.df
    chk = RowChecker(movies)
    chk.ident("movieId", integer=True)
    if src.name == "u.item":
        chk.fail(bad_flag, "bad genre flag")
    fail_duplicate_ids(chk, movies[["movieId", "title", "genres"]], "movieId", "movieId")
    keep = chk.quarantine(q, str(src), read)
    ids = chk.values["movieId"][keep].reset_index(drop=True)
    genres = movies["genres"].reset_index(drop=True)[keep].astype("string").str.strip().reset_index(drop=True)
    genres = genres.mask(genres.isin(["(no genres listed)", ""]))
    q.record(str(src), read.n_in, len(ids))
    cols = {
        "item_id": pa.array(ids.to_numpy(dtype=object), pa.string()),
        "title": pa.array(
            movies["title"].reset_index(drop=True)[keep].astype("string").str.strip().to_numpy(dtype=object),
            pa.string(),
        ),
        "genres": pa.array(genres.to_numpy(dtype=object, na_value=None), pa.string()),
    }
    tags = _movielens_tags(path, q, findings)
    if tags is not None:
        cols["tags"] = pa.array(ids.map(tags).to_numpy(dtype=object, na_value=None), pa.string())
    return ITEMS.validate(pa.table(cols), str(src)), str(src)


def _ml100k_genres(path: Path) -> tuple[str, ...]:
    if not path.exists():
        return ML100K_GENRES
    tl = read_lines(path, "MovieLens u.genre")
    pairs = [line.split("|") for line in tl.lines.to_pylist() if line.strip()]  # ~20 lines
    return tuple(name for name, _ in sorted(((p[0], int(p[1])) for p in pairs if len(p) == 2), key=lambda t: t[1]))


def _movielens_tags(path: Path, q: Quarantine, findings: dict) -> pd.Series | None:
    """movieId -> "tag1|tag2" (distinct lower-cased tags, sorted)."""
    if (path / "tags.csv").exists() or (path / "tags.csv").is_symlink():
        src = path / "tags.csv"
        read = read_csv(src, ["userId", "movieId", "tag"], q, "MovieLens tags CSV (userId,movieId,tag,timestamp)")
    elif (path / "tags.dat").exists():
        src = path / "tags.dat"
        read = read_separated(src, "::", ["userId", "movieId", "tag", "timestamp"], q, "MovieLens tags.dat")
    else:
        return None
    chk = RowChecker(read.df)
    chk.ident("movieId", integer=True)
    chk.ident("tag")
    keep = chk.quarantine(q, str(src), read)
    q.record(str(src), read.n_in, int(keep.sum()))
    findings["tags_file"] = {"file": str(src), "status": "read", "tags": int(keep.sum())}
    t = (
        pd.DataFrame(
            {
                "movieId": chk.values["movieId"][keep].to_numpy(dtype=object),
                "tag": chk.values["tag"][keep].str.lower().str.replace("|", "/", regex=False).to_numpy(dtype=object),
            }
        )
        .drop_duplicates()
        .sort_values(["movieId", "tag"])
    )
    return t.groupby("movieId", sort=True)["tag"].agg("|".join)
