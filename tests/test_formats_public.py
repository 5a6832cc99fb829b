"""The public-dataset readers (``--format``), on small files in each dataset's published layout.

Every test runs the reader, validates each batch as ingest does, and checks exact typed
values of chosen rows and the count invariant: every input row (a physical line of the
file whose rows become events) is either an event or quarantined, with the expected reason.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import duckdb
import pytest

from decayrec.errors import InputError
from decayrec.io.formats import READERS, get_reader
from decayrec.io.formats.public import REMOVE_FROM_CART_REASON
from decayrec.io.formats.sniff import guess_format
from decayrec.io.source import read_header
from decayrec.io.validate import validate_batch

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "data" / "format-samples"

PUBLIC = ("retailrocket", "taobao", "rees46", "instacart", "movielens", "cdnow", "diginetica", "olist")


@dataclass
class Result:
    events: dict[tuple[str, int], dict]  # (file name, line) -> typed event
    quarantined: dict[tuple[str, int], str]  # (file name, line) -> reason
    rows: int
    epoch_units: set

    def lines(self, name: str) -> set[int]:
        return {line for (n, line) in (*self.events, *self.quarantined) if n == name}


def read(fmt: str, *paths: Path, block_bytes: int = 1 << 20) -> Result:
    con = duckdb.connect()
    events: dict[tuple[str, int], dict] = {}
    quarantined: dict[tuple[str, int], str] = {}
    rows = 0
    units = set()
    for batch in get_reader(fmt).read(list(paths), block_bytes):
        units.add(batch.epoch_unit)
        result = validate_batch(con, batch.table, batch.epoch_unit or "s")
        rows += batch.table.num_rows
        name = Path(batch.source).name
        for row in result.events.to_pylist():
            key = (name, row.pop("_line"))
            assert key not in events and key not in quarantined, key
            events[key] = row
        for line, reason in zip(result.quarantined["line"].to_pylist(), result.quarantined["reason"].to_pylist()):
            key = (name, line)
            assert key not in events and key not in quarantined, key
            quarantined[key] = reason
    assert rows == len(events) + len(quarantined)
    return Result(events, quarantined, rows, units)


def ev(user, item, event, ts, category=None, price=None, quantity=None, session=None) -> dict:
    return {
        "user_id": user,
        "item_id": item,
        "event": event,
        "timestamp": ts,
        "category_id": category,
        "price": price,
        "quantity": quantity,
        "session_id": session,
        "event_id": None,
        "rec_id": None,
    }


def write(path: Path, text: str, gz: bool = False) -> Path:
    if gz:
        with gzip.open(path, "wt", encoding="utf-8", newline="") as fh:
            fh.write(text)
    else:
        path.write_text(text, encoding="utf-8", newline="")
    return path


def is_reason(reason: str, kind: str, value: str | None = None) -> bool:
    """A validation reason of this kind (and about this raw value), whatever its exact wording."""
    return reason.startswith(kind) and (value is None or f"'{value}'" in reason)


def one_line_error(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


def test_every_public_format_is_registered():
    for name in PUBLIC:
        assert name in READERS, name
        assert READERS[name].description and "\n" not in READERS[name].description


# --- RetailRocket -----------------------------------------------------------------------------


def test_retailrocket_events_with_item_properties(tmp_path):
    events = write(
        tmp_path / "events.csv",
        "timestamp,visitorid,event,itemid,transactionid\n"
        "1433221332117,257597,view,355908,\n"
        "1433224214164,992329,view,248676,\n"
        "1433221999827,111016,addtocart,318965,\n"
        "1433221955914,483717,transaction,253185,4000\n"
        "1433221955915,483717,remove,253185,\n"
        "1433221955916,483717,view,253185,,extra\n",
    )
    part1 = write(
        tmp_path / "item_properties_part1.csv",
        "timestamp,itemid,property,value\n"
        "1435460400000,355908,categoryid,1173\n"
        "1441508400000,355908,categoryid,1200\n"
        "1439089200000,248676,available,1\n",
    )
    part2 = write(
        tmp_path / "item_properties_part2.csv", "timestamp,itemid,property,value\n1431226800000,318965,categoryid,1268\n"
    )
    r = read("retailrocket", events, part1, part2)
    assert r.epoch_units == {"ms"}
    assert r.events[("events.csv", 2)] == ev("257597", "355908", "view", datetime(2015, 6, 2, 5, 2, 12, 117000), "1200")
    assert r.events[("events.csv", 3)] == ev("992329", "248676", "view", datetime(2015, 6, 2, 5, 50, 14, 164000))
    assert r.events[("events.csv", 4)] == ev("111016", "318965", "cart", datetime(2015, 6, 2, 5, 13, 19, 827000), "1268")
    assert r.events[("events.csv", 5)] == ev("483717", "253185", "purchase", datetime(2015, 6, 2, 5, 12, 35, 914000))
    assert is_reason(r.quarantined[("events.csv", 6)], "unknown event type", "remove")
    assert r.quarantined[("events.csv", 7)] == "wrong number of fields: expected 5, found 6"
    assert r.lines("events.csv") == set(range(2, 8)) and r.rows == 6


def test_retailrocket_without_properties_and_missing_column(tmp_path):
    events = write(tmp_path / "events.csv", "timestamp,visitorid,event,itemid,transactionid\n1433221332117,1,view,2,\n")
    r = read("retailrocket", events)
    assert r.events[("events.csv", 2)]["category_id"] is None
    bad = write(tmp_path / "bad.csv", "timestamp,visitor,event,itemid\n1,2,view,3\n")
    with pytest.raises(InputError) as excinfo:
        read("retailrocket", bad)
    assert "'visitorid'" in one_line_error(excinfo)


# --- Taobao -----------------------------------------------------------------------------------


def test_taobao_userbehavior(tmp_path):
    path = write(
        tmp_path / "UserBehavior.csv",
        "1,2268318,2520377,pv,1511544070\n"
        "1,2333346,2520771,buy,1511561733\n"
        "100,5,6,cart,1511561733\n"
        "100,5,6,fav,1511561733,9\n"
        "100,5,6,fav,oops\n"
        "100,7,8,like,1511561733\n",
    )
    r = read("taobao", path)
    assert r.epoch_units == {"s"}
    assert r.events[("UserBehavior.csv", 1)] == ev("1", "2268318", "view", datetime(2017, 11, 24, 17, 21, 10), "2520377")
    assert r.events[("UserBehavior.csv", 2)] == ev("1", "2333346", "purchase", datetime(2017, 11, 24, 22, 15, 33), "2520771")
    assert r.events[("UserBehavior.csv", 3)]["event"] == "cart"
    assert r.quarantined[("UserBehavior.csv", 4)] == "wrong number of fields: expected 5, found 6"
    assert is_reason(r.quarantined[("UserBehavior.csv", 5)], "unparseable timestamp", "oops")
    assert r.events[("UserBehavior.csv", 6)]["event"] == "fav"
    assert r.lines("UserBehavior.csv") == set(range(1, 7))


def test_taobao_copy_with_a_header_row(tmp_path):
    path = write(tmp_path / "ub.csv", "user_id,item_id,category_id,behavior_type,timestamp\n1,2268318,2520377,pv,1511544070\n")
    r = read("taobao", path)
    assert set(r.events) == {("ub.csv", 2)} and not r.quarantined
    assert guess_format(read_header(path)) == "taobao"
    # a first row that is neither a header nor data is a quarantined row, not skipped
    path = write(tmp_path / "ub2.csv", "x,y,z,pv,t\n1,2268318,2520377,pv,1511544070\n")
    r = read("taobao", path)
    assert set(r.quarantined) == {("ub2.csv", 1)} and set(r.events) == {("ub2.csv", 2)}


def test_line_numbers_stay_exact_across_blocks_with_malformed_rows(tmp_path):
    lines = []
    for i in range(1, 2001):
        bad = i % 37 == 0
        lines.append(f"{i},{i},1,pv,1511544070" + (",x" if bad else ""))
    path = write(tmp_path / "UserBehavior.csv", "\n".join(lines) + "\n")
    r = read("taobao", path, block_bytes=512)
    for (_, line), row in r.events.items():
        assert row["user_id"] == str(line)
    assert set(r.quarantined) == {("UserBehavior.csv", i) for i in range(37, 2001, 37)}
    assert r.lines("UserBehavior.csv") == set(range(1, 2001))


@pytest.mark.skipif(not SAMPLES.is_dir(), reason="shared/data/format-samples is not beside the project")
def test_taobao_real_sample():
    r = read("taobao", SAMPLES / "taobao_userbehavior_head43users" / "UserBehavior_head.csv.gz")
    assert r.rows == 4321 and len(r.lines("UserBehavior_head.csv.gz")) == 4321
    assert r.events[("UserBehavior_head.csv.gz", 1)] == ev("1", "2268318", "view", datetime(2017, 11, 24, 17, 21, 10), "2520377")
    counts = {}
    for row in r.events.values():
        counts[row["event"]] = counts.get(row["event"], 0) + 1
    assert counts == {"view": 3926, "cart": 190, "fav": 128, "purchase": 77}
    assert len({row["user_id"] for row in r.events.values()}) == 43


# --- REES46 -----------------------------------------------------------------------------------

REES46_HEADER = "event_time,event_type,product_id,category_id,category_code,brand,price,user_id,user_session\n"


def test_rees46_monthly_file(tmp_path):
    write(
        tmp_path / "2019-Oct.csv",
        REES46_HEADER
        + "2019-10-01 00:00:00 UTC,view,44600062,2103807459595387724,,shiseido,35.79,541312140,72d76fde-8bb3-4e00-8c23-a032dfed738c\n"
        "2019-10-01 00:00:01 UTC,cart,3900821,2053013552326770905,appliances.environment.water_heater,aqua,33.20,554748717,9333dfbd-b87a-4708-9857-6336556b0fcc\n"
        "2019-10-01 00:00:04 UTC,remove_from_cart,3900821,2053013552326770905,,aqua,33.20,554748717,9333dfbd-b87a-4708-9857-6336556b0fcc\n"
        "2019-10-01 00:05:14 UTC,purchase,1004856,2053013555631882655,electronics.smartphone,samsung,130.76,543272936,8187d148-3c41-46d4-b0c0-9c08cd9dc564\n"
        "2019-10-01 00:05:15 UTC,purchase,1004856,2053013555631882655,,samsung,,,8187d148\n",
        gz=True,
    ).rename(tmp_path / "2019-Oct.csv.gz")
    r = read("rees46", tmp_path / "2019-Oct.csv.gz")
    name = "2019-Oct.csv.gz"
    assert r.events[(name, 2)] == ev(
        "541312140",
        "44600062",
        "view",
        datetime(2019, 10, 1),
        "2103807459595387724",
        35.79,
        session="72d76fde-8bb3-4e00-8c23-a032dfed738c",
    )
    assert r.events[(name, 3)]["event"] == "cart" and r.events[(name, 3)]["price"] == 33.2
    assert r.quarantined[(name, 4)] == REMOVE_FROM_CART_REASON
    assert r.events[(name, 5)] == ev(
        "543272936",
        "1004856",
        "purchase",
        datetime(2019, 10, 1, 0, 5, 14),
        "2053013555631882655",
        130.76,
        session="8187d148-3c41-46d4-b0c0-9c08cd9dc564",
    )
    assert is_reason(r.quarantined[(name, 6)], "missing user_id")
    assert r.lines(name) == set(range(2, 7))
    assert "remove_from_cart" in REMOVE_FROM_CART_REASON and "not modelled" in REMOVE_FROM_CART_REASON


def test_rees46_missing_column(tmp_path):
    path = write(tmp_path / "2019-Oct.csv", "event_time,product_id,user_id\n2019-10-01 00:00:00 UTC,1,2\n")
    with pytest.raises(InputError) as excinfo:
        read("rees46", path)
    assert "'event_type'" in one_line_error(excinfo)


# --- Instacart --------------------------------------------------------------------------------


def _instacart_files(tmp_path: Path) -> list[Path]:
    # Named arbitrarily: files are identified by their header.
    orders = write(
        tmp_path / "a.csv",
        "order_id,user_id,eval_set,order_number,order_dow,order_hour_of_day,days_since_prior_order\n"
        "2539329,1,prior,1,2,08,\n"
        "2398795,1,prior,2,3,07,15.0\n"
        "473747,1,prior,3,3,12,21.0\n"
        "2254736,1,train,4,4,07,29.0\n"
        "431534,2,prior,1,4,15,\n"
        "3367565,2,prior,2,6,25,7.0\n"
        "4001,4,prior,1,1,10,\n"
        "4002,4,prior,2,1,10,\n"
        "4003,4,prior,3,1,10,3.0\n"
        "9000,5,test,1,1,10,\n",
    )
    prior = write(
        tmp_path / "b.csv",
        "order_id,product_id,add_to_cart_order,reordered\n"
        "2539329,196,1,0\n"
        "2539329,14084,2,0\n"
        "2398795,196,1,1\n"
        "473747,12427,1,0\n"
        "3367565,196,1,0\n"
        "999999,196,1,0\n"
        "4001,196,1,0\n"
        "4003,196,1,0\n",
    )
    train = write(tmp_path / "c.csv", "order_id,product_id,add_to_cart_order,reordered\n2254736,196,1,1\n")
    products = write(
        tmp_path / "d.csv",
        "product_id,product_name,aisle_id,department_id\n"
        "196,Soda,77,7\n"
        '14084,"Organic Unsweetened Vanilla Almond Milk, ""Unsweetened""",91,16\n',
    )
    aisles = write(tmp_path / "aisles.csv", "aisle_id,aisle\n77,soft drinks\n")
    return [train, orders, prior, products, aisles]


def test_instacart_orders_and_order_products(tmp_path):
    r = read("instacart", *_instacart_files(tmp_path))
    assert r.events[("b.csv", 2)] == ev("1", "196", "purchase", datetime(2017, 1, 1, 8), "77", None, 1.0, "2539329")
    assert r.events[("b.csv", 3)] == ev("1", "14084", "purchase", datetime(2017, 1, 1, 8), "91", None, 1.0, "2539329")
    assert r.events[("b.csv", 4)]["timestamp"] == datetime(2017, 1, 16, 7)  # + 15 days
    assert r.events[("b.csv", 5)] == ev("1", "12427", "purchase", datetime(2017, 2, 6, 12), None, None, 1.0, "473747")
    assert r.events[("c.csv", 2)] == ev("1", "196", "purchase", datetime(2017, 3, 7, 7), "77", None, 1.0, "2254736")
    assert r.quarantined[("b.csv", 6)] == "order_hour_of_day is not 0..23: '25'"
    assert r.quarantined[("b.csv", 7)] == "order_id is not in orders.csv: '999999'"
    assert r.events[("b.csv", 8)]["timestamp"] == datetime(2017, 1, 1, 10)
    assert r.quarantined[("b.csv", 9)].startswith("days_since_prior_order or order_number is missing")
    assert r.lines("b.csv") == set(range(2, 10)) and r.lines("c.csv") == {2}
    assert r.rows == 9


def test_instacart_needs_orders_and_its_columns(tmp_path):
    _train, orders, prior, products, _ = _instacart_files(tmp_path)
    with pytest.raises(InputError) as excinfo:
        read("instacart", prior, products)
    assert "orders.csv" in one_line_error(excinfo)
    bad = write(tmp_path / "orders.csv", "order_id,user_id,eval_set,order_number,order_dow\n1,1,prior,1,2\n")
    with pytest.raises(InputError) as excinfo:
        read("instacart", bad, prior)
    assert "'order_hour_of_day'" in one_line_error(excinfo)
    stray = write(tmp_path / "stray.csv", "x,y\n1,2\n")
    with pytest.raises(InputError) as excinfo:
        read("instacart", orders, prior, stray)
    assert "stray.csv" in one_line_error(excinfo)


# --- MovieLens --------------------------------------------------------------------------------


def test_movielens_ratings_csv_with_movies(tmp_path):
    ratings = write(
        tmp_path / "ratings.csv",
        "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,3,4.0,964981247\n2,11,0.5,\n2,999,3.5,1260759144\n",
    )
    movies = write(
        tmp_path / "movies.csv",
        "movieId,title,genres\n"
        "1,Toy Story (1995),Adventure|Animation|Children|Comedy|Fantasy\n"
        '3,"American President, The (1995)",Comedy|Drama|Romance\n'
        "11,Unknown (2015),(no genres listed)\n",
    )
    r = read("movielens", ratings, movies)
    assert r.epoch_units == {"s"}
    assert r.events[("ratings.csv", 2)] == ev("1", "1", "purchase", datetime(2000, 7, 30, 18, 45, 3), "Adventure")
    assert r.events[("ratings.csv", 3)]["category_id"] == "Comedy"
    assert is_reason(r.quarantined[("ratings.csv", 4)], "missing timestamp")
    assert r.events[("ratings.csv", 5)] == ev("2", "999", "purchase", datetime(2009, 12, 14, 2, 52, 24))
    assert r.lines("ratings.csv") == {2, 3, 4, 5} and r.rows == 4


def test_movielens_ratings_dat_and_movies_dat(tmp_path):
    ratings = write(tmp_path / "ratings.dat", "1::1193::5::978300760\n1::661::3::978302109\n2::3408\n10::1::4::978300760\n")
    movies = tmp_path / "movies.dat"
    movies.write_bytes(
        "1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n1::Caf\xe9 (1995)::Animation|Children's\n".encode("latin-1")
    )
    r = read("movielens", ratings, movies)
    assert r.events[("ratings.dat", 1)] == ev("1", "1193", "purchase", datetime(2000, 12, 31, 22, 12, 40), "Drama")
    assert r.events[("ratings.dat", 2)]["category_id"] is None
    assert r.quarantined[("ratings.dat", 3)] == "wrong number of fields: expected 4 separated by ::, found 2"
    assert r.events[("ratings.dat", 4)]["category_id"] == "Animation"
    assert r.lines("ratings.dat") == {1, 2, 3, 4}


def test_movielens_u_data(tmp_path):
    path = write(tmp_path / "u.data", "196\t242\t3\t881250949\n186\t302\t3\t891717742\n22\t377\t1\n")
    r = read("movielens", path)
    assert r.events[("u.data", 1)] == ev("196", "242", "purchase", datetime(1997, 12, 4, 15, 55, 49))
    assert r.quarantined[("u.data", 3)] == "wrong number of fields: expected 4, found 3"
    assert r.lines("u.data") == {1, 2, 3}


def test_movielens_missing_column_and_other_files(tmp_path):
    path = write(tmp_path / "ratings.csv", "userId,rating,timestamp\n1,4.0,964982703\n")
    with pytest.raises(InputError) as excinfo:
        read("movielens", path)
    assert "'movieId'" in one_line_error(excinfo)
    tags = write(tmp_path / "tags.csv", "userId,movieId,tag,timestamp\n15,339,sandra 'boring' bullock,1138537770\n")
    with pytest.raises(InputError) as excinfo:
        read("movielens", tags)
    assert "'rating'" in one_line_error(excinfo)
    tags_dat = write(tmp_path / "tags.dat", "15::4973::excellent!::1215184630\n")
    with pytest.raises(InputError) as excinfo:
        read("movielens", tags_dat)
    assert "tags.dat" in one_line_error(excinfo)
    ratings = write(tmp_path / "r.csv", "userId,movieId,rating,timestamp\n1,31,2.5,1260759144\n")
    links = write(tmp_path / "links.csv", "movieId,imdbId,tmdbId\n1,0114709,862\n")
    assert read("movielens", ratings, links).lines("r.csv") == {2}


@pytest.mark.skipif(not SAMPLES.is_dir(), reason="shared/data/format-samples is not beside the project")
def test_movielens_real_sample():
    folder = SAMPLES / "movielens_latest_small"
    r = read("movielens", folder / "ratings.csv.gz", folder / "movies.csv.gz")
    assert r.rows == 100_004 and not r.quarantined
    assert r.lines("ratings.csv.gz") == set(range(2, 100_006))
    # the first rating: 1,31,2.5,1260759144; movie 31 is "Dangerous Minds (1995)", Drama
    assert r.events[("ratings.csv.gz", 2)] == ev("1", "31", "purchase", datetime(2009, 12, 14, 2, 52, 24), "Drama")
    assert r.events[("ratings.csv.gz", 3)]["category_id"] == "Animation"  # 1029 Dumbo: Animation|Children|Drama|Musical
    assert sum(row["category_id"] is None for row in r.events.values()) < 100


# --- CDNOW ------------------------------------------------------------------------------------


def test_cdnow_master(tmp_path):
    path = write(
        tmp_path / "CDNOW_master.txt",
        "   00001 19970101  1  11.77\n"
        "   00002 19970112  1  12.00\n"
        "   00002 19970112  5  77.00\n"
        "   00003 19970102  2  20.76\n"
        "   00003 19970330  0   0.00\n"
        "   00004 1997011  1  10.00\n"
        "   00005 19970101  1\n"
        "   00006 19970231  1  10.00\n"
        "\n"
        "   00007 19970101  1  10.00\n",
    )
    r = read("cdnow", path)
    name = "CDNOW_master.txt"
    assert r.events[(name, 1)] == ev("00001", "cdnow", "purchase", datetime(1997, 1, 1), None, 11.77, 1.0)
    assert r.events[(name, 3)] == ev("00002", "cdnow", "purchase", datetime(1997, 1, 12), None, 15.4, 5.0)
    assert r.events[(name, 4)]["price"] == 20.76 / 2
    assert r.quarantined[(name, 5)] == "zero CDs bought: no unit price"
    assert r.quarantined[(name, 6)] == "date is not YYYYMMDD: '1997011'"
    assert r.quarantined[(name, 7)].startswith("wrong number of fields: expected 4 separated by blanks")
    assert is_reason(r.quarantined[(name, 8)], "unparseable timestamp", "1997-02-31")
    assert r.quarantined[(name, 9)].startswith("wrong number of fields")  # a blank line is a row
    assert r.events[(name, 10)]["user_id"] == "00007"
    assert r.lines(name) == set(range(1, 11))


# --- Diginetica -------------------------------------------------------------------------------


def test_diginetica_views_purchases_and_categories(tmp_path):
    views = write(
        tmp_path / "train-item-views.csv",
        "sessionId;userId;itemId;timeframe;eventdate\n"
        "1;NA;81766;526309;2016-05-09\n"
        "1;;31331;1031018;2016-05-09\n"
        "2;5;9654;75848;2016-05-10\n"
        "3;NA;1;soon;2016-05-10\n"
        "4;NA;1;10;May 10\n",
    )
    purchases = write(
        tmp_path / "train-purchases.csv",
        "sessionId;userId;timeframe;eventdate;ordernumber;itemId\n2;5;100000;2016-05-10;1001;9654\n",
    )
    categories = write(tmp_path / "product-categories.csv", "itemId;categoryId\n81766;1095\n9654;5\n")
    r = read("diginetica", views, purchases, categories)
    v = "train-item-views.csv"
    assert r.events[(v, 2)] == ev("session:1", "81766", "view", datetime(2016, 5, 9, 0, 8, 46, 309000), "1095", session="1")
    assert r.events[(v, 3)] == ev("session:1", "31331", "view", datetime(2016, 5, 9, 0, 17, 11, 18000), session="1")
    assert r.events[(v, 4)] == ev("5", "9654", "view", datetime(2016, 5, 10, 0, 1, 15, 848000), "5", session="2")
    assert r.quarantined[(v, 5)] == "timeframe is not a number of milliseconds: 'soon'"
    assert r.quarantined[(v, 6)] == "eventdate is not a date (YYYY-MM-DD): 'May 10'"
    assert r.events[("train-purchases.csv", 2)] == ev("5", "9654", "purchase", datetime(2016, 5, 10, 0, 1, 40), "5", session="2")
    assert r.lines(v) == set(range(2, 7)) and r.rows == 6


def test_diginetica_snake_case_header_and_missing_column(tmp_path):
    path = write(tmp_path / "views.csv", "session_id;user_id;item_id;timeframe;eventdate\n7;NA;1;0;2016-01-03\n")
    r = read("diginetica", path)
    assert r.events[("views.csv", 2)] == ev("session:7", "1", "view", datetime(2016, 1, 3), session="7")
    bad = write(tmp_path / "bad.csv", "sessionId;userId;itemId;eventdate\n7;NA;1;2016-01-03\n")
    with pytest.raises(InputError) as excinfo:
        read("diginetica", bad)
    assert "'timeframe'" in one_line_error(excinfo)


@pytest.mark.skipif(not SAMPLES.is_dir(), reason="shared/data/format-samples is not beside the project")
def test_diginetica_real_sample():
    r = read("diginetica", SAMPLES / "diginetica_sample" / "sample_train-item-views.csv.gz")
    assert r.rows == 12_391 and not r.quarantined
    assert r.events[("sample_train-item-views.csv.gz", 2)] == ev(
        "session:1", "81766", "view", datetime(2016, 5, 9, 0, 8, 46, 309000), session="1"
    )


# --- Olist ------------------------------------------------------------------------------------

OLIST_ORDERS = (
    "order_id,customer_id,order_status,order_purchase_timestamp,order_approved_at,order_delivered_carrier_date,"
    "order_delivered_customer_date,order_estimated_delivery_date\n"
    "e481f51cbdc54678b7cc49136f2d6af7,9ef432eb6251297304e76186b10a928d,delivered,2017-10-02 10:56:33,"
    "2017-10-02 11:07:15,2017-10-04 19:55:00,2017-10-10 21:25:13,2017-10-18 00:00:00\n"
    "53cdb2fc8bc7dce0b6741e2150273451,b0830fb4747a6c6d20dea0b8c802d7ef,canceled,2018-07-24 20:41:37,,,,2018-08-13 00:00:00\n"
    "47770eb9100c2d0c44946d9cf07ec65d,41ce2a54c0b03bf3443c3d931a367089,delivered,2018-08-08 08:38:49,,,,2018-09-04 00:00:00\n"
)
OLIST_ITEMS = (
    "order_id,order_item_id,product_id,seller_id,shipping_limit_date,price,freight_value\n"
    "e481f51cbdc54678b7cc49136f2d6af7,1,87285b34884572647811a353c7ac498a,3504c0cb71d7fa48d967e0e4c94d59d9,2017-10-06 11:07:15,29.99,8.72\n"
    "e481f51cbdc54678b7cc49136f2d6af7,2,87285b34884572647811a353c7ac498a,3504c0cb71d7fa48d967e0e4c94d59d9,2017-10-06 11:07:15,29.99,8.72\n"
    "e481f51cbdc54678b7cc49136f2d6af7,3,595fac2a385ac33a80bd5114aec74eb8,289cdb325fb7e7f891c38608bf9e0962,2017-10-06 11:07:15,10.00,1.00\n"
    "53cdb2fc8bc7dce0b6741e2150273451,1,87285b34884572647811a353c7ac498a,3504c0cb71d7fa48d967e0e4c94d59d9,2018-07-30 03:24:27,29.99,8.72\n"
    "00010242fe8c5a6d1ba2dd792cb16214,1,595fac2a385ac33a80bd5114aec74eb8,289cdb325fb7e7f891c38608bf9e0962,2017-09-19 09:45:35,58.90,13.29\n"
    "47770eb9100c2d0c44946d9cf07ec65d,1,595fac2a385ac33a80bd5114aec74eb8,289cdb325fb7e7f891c38608bf9e0962,2018-08-13 08:55:23,159.90,19.22\n"
    "47770eb9100c2d0c44946d9cf07ec65d,2,595fac2a385ac33a80bd5114aec74eb8,289cdb325fb7e7f891c38608bf9e0962\n"
    "\n"
    "\n"
)
OLIST_CUSTOMERS = (
    "customer_id,customer_unique_id,customer_zip_code_prefix,customer_city,customer_state\n"
    "9ef432eb6251297304e76186b10a928d,7c396fd4830fd04220f754e42b4e5bff,3149,sao paulo,SP\n"
    "b0830fb4747a6c6d20dea0b8c802d7ef,af07308b275d755c9edb36a90c618231,47813,barreiras,BA\n"
    "41ce2a54c0b03bf3443c3d931a367089,7c396fd4830fd04220f754e42b4e5bff,75265,vianopolis,GO\n"
)
OLIST_PRODUCTS = (
    "product_id,product_category_name,product_name_lenght,product_description_lenght,product_photos_qty,"
    "product_weight_g,product_length_cm,product_height_cm,product_width_cm\n"
    "87285b34884572647811a353c7ac498a,utilidades_domesticas,40,268,4,500,19,8,13\n"
    "595fac2a385ac33a80bd5114aec74eb8,,,,,,,,\n"
)


def test_olist_orders_items_customers_products(tmp_path):
    orders = write(tmp_path / "olist_orders_dataset.csv", OLIST_ORDERS)
    items = write(tmp_path / "olist_order_items_dataset.csv", OLIST_ITEMS)
    customers = write(tmp_path / "olist_customers_dataset.csv", OLIST_CUSTOMERS)
    products = write(tmp_path / "olist_products_dataset.csv", OLIST_PRODUCTS)
    payments = write(tmp_path / "olist_order_payments_dataset.csv", "order_id,payment_sequential,payment_type\nx,1,boleto\n")
    r = read("olist", items, orders, customers, products, payments)
    name = "olist_order_items_dataset.csv"
    real_person = "7c396fd4830fd04220f754e42b4e5bff"
    assert r.events[(name, 2)] == ev(
        real_person,
        "87285b34884572647811a353c7ac498a",
        "purchase",
        datetime(2017, 10, 2, 10, 56, 33),
        "utilidades_domesticas",
        29.99,
        2.0,
        "e481f51cbdc54678b7cc49136f2d6af7",
    )
    assert r.events[(name, 4)] == ev(
        real_person,
        "595fac2a385ac33a80bd5114aec74eb8",
        "purchase",
        datetime(2017, 10, 2, 10, 56, 33),
        None,
        10.0,
        1.0,
        "e481f51cbdc54678b7cc49136f2d6af7",
    )
    assert r.quarantined[(name, 5)] == "order status canceled"
    assert r.quarantined[(name, 6)] == "order_id is not in olist_orders_dataset.csv: '00010242fe8c5a6d1ba2dd792cb16214'"
    assert r.events[(name, 7)]["user_id"] == real_person  # another order of the same person
    assert r.quarantined[(name, 8)] == "wrong number of fields: expected 7, found 4"
    # rows read for Olist: (order, product) pairs plus malformed item rows; line 3 is in line 2's pair
    assert is_reason(r.quarantined[(name, 9)], "order_id is not in olist_orders_dataset.csv", "")
    assert (name, 10) in r.quarantined  # blank lines are rows, each its own
    assert r.lines(name) == {2, 4, 5, 6, 7, 8, 9, 10} and r.rows == 8


def test_olist_without_customers_uses_customer_id(tmp_path):
    orders = write(tmp_path / "o.csv", OLIST_ORDERS)
    items = write(tmp_path / "i.csv", OLIST_ITEMS)
    r = read("olist", orders, items)
    assert r.events[("i.csv", 2)]["user_id"] == "9ef432eb6251297304e76186b10a928d"
    assert r.events[("i.csv", 2)]["category_id"] is None
    bad = write(tmp_path / "items.csv", "order_id,order_item_id,product_id,seller_id\nx,1,p,s\n")
    with pytest.raises(InputError) as excinfo:
        read("olist", orders, bad)
    assert "'price'" in one_line_error(excinfo)


@pytest.mark.parametrize(
    ("fmt", "name", "text", "missing"),
    [
        ("retailrocket", "item_properties_part1.csv", "timestamp,itemid,property,value\n1,2,categoryid,3\n", "'visitorid'"),
        ("movielens", "movies.csv", "movieId,title,genres\n1,Toy Story (1995),Comedy\n", "'userId'"),
        ("diginetica", "product-categories.csv", "itemId;categoryId\n1;2\n", "'sessionId'"),
    ],
)
def test_lookup_file_alone_is_an_input_error(tmp_path, fmt, name, text, missing):
    with pytest.raises(InputError) as excinfo:
        read(fmt, write(tmp_path / name, text))
    assert missing in one_line_error(excinfo)


# --- sniffing ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("first_line", "expected"),
    [
        ("timestamp,visitorid,event,itemid,transactionid", "retailrocket"),
        ("1,2268318,2520377,pv,1511544070", "taobao"),
        (REES46_HEADER.strip(), "rees46"),
        ("order_id,user_id,eval_set,order_number,order_dow,order_hour_of_day,days_since_prior_order", "instacart"),
        ("order_id,product_id,add_to_cart_order,reordered", "instacart"),
        ("userId,movieId,rating,timestamp", "movielens"),
        ("1::1193::5::978300760", "movielens"),
        ("196\t242\t3\t881250949", "movielens"),
        ("   00001 19970101  1  11.77", "cdnow"),
        ("sessionId;userId;itemId;timeframe;eventdate", "diginetica"),
        ("session_id;user_id;item_id;timeframe;eventdate", "diginetica"),
        ("order_id,customer_id,order_status,order_purchase_timestamp,order_approved_at", "olist"),
        ("order_id,order_item_id,product_id,seller_id,shipping_limit_date,price,freight_value", "olist"),
        ("user_id,item_id,event,timestamp", None),
    ],
)
def test_guess_format_from_the_first_line(tmp_path, first_line, expected):
    path = write(tmp_path / "f.csv", first_line + "\n")
    assert guess_format(read_header(path)) == expected
