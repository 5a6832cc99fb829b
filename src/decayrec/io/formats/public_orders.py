"""Readers for the order-based public datasets, which join several files: Instacart and Olist.

Files are told apart by their header, never by their name. The file whose rows become
events (Instacart ``order_products__*.csv``, Olist ``olist_order_items_dataset.csv``) is
streamed with :func:`~decayrec.io.source.csv_batches`, so ``_line`` is its physical line
and a malformed row is quarantined there; the other files are loaded once into an
in-memory DuckDB database (which spills to disk) and joined batch by batch.

Instacart publishes no absolute times. An order's time is derived as
``2017-01-01T00:00:00Z`` (:data:`INSTACART_ANCHOR`) + the user's cumulative
``days_since_prior_order`` (first order: 0) + ``order_hour_of_day`` hours. Gaps of 30+
days are capped at 30 in the data and ``order_dow`` is not used, so only the order of a
user's purchases and the spacing between them are real, not the calendar dates.

Olist has several item rows per (order, product) when more than one unit was bought; the
reader emits one purchase per (order, product) with quantity = the number of rows and
price = the unit price (the rows' common price, or their mean if they differ), ``_line``
= the group's first item row. So for Olist the rows read are (order, product) pairs.
Purchase times are ``order_purchase_timestamp`` as written (naive, read as UTC; the
data is in Brazilian local time).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

from decayrec import schema
from decayrec.errors import InputError
from decayrec.io.formats.public_common import Duck, classify, duck_batches, require
from decayrec.io.source import LINE, REASON, RawBatch, Reader, csv_batches

INSTACART_ANCHOR = "2017-01-01T00:00:00Z"
_ANCHOR_EPOCH_S = 1483228800  # INSTACART_ANCHOR as Unix seconds

# --- Instacart ------------------------------------------------------------------------------

_IC_ORDERS = {
    "orderid": "order_id",
    "userid": "user_id",
    "ordernumber": "order_number",
    "orderhourofday": "order_hour_of_day",
    "dayssincepriororder": "days_since_prior_order",
}
_IC_ITEMS = {"orderid": "order_id", "productid": "product_id"}
_IC_PRODUCTS = {"productid": "product_id", "aisleid": "aisle_id"}
_IC_EXPECTED = (
    "Instacart orders.csv with order_products__prior.csv and/or order_products__train.csv, "
    "optionally products.csv (aisles.csv and departments.csv are ignored)"
)


def _instacart_orders_sql(sources: list[str]) -> str:
    raw = " UNION ALL ".join(
        f"""SELECT trim(orderid) AS order_id, trim(userid) AS user_id,
                   try_cast(trim(ordernumber) AS INTEGER) AS n,
                   try_cast(trim(dayssincepriororder) AS DOUBLE) AS d,
                   orderhourofday AS h_s, try_cast(trim(orderhourofday) AS DOUBLE) AS h
            FROM {src}"""
        for src in sources
    )
    return f"""
    WITH raw AS ({raw}),
    dedup AS (
        SELECT *, count(*) OVER (PARTITION BY order_id) AS copies FROM raw
        QUALIFY row_number() OVER (PARTITION BY order_id ORDER BY n) = 1
    ),
    placed AS (
        SELECT *,
            sum(coalesce(d, 0)) OVER w AS days,
            bool_or(n IS NULL OR (n > 1 AND d IS NULL) OR coalesce(d < 0, false)) OVER w AS broken
        FROM dedup
        WINDOW w AS (PARTITION BY user_id ORDER BY n, order_id ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
    )
    SELECT order_id, user_id,
        CASE WHEN NOT broken AND h >= 0 AND h < 24
             THEN strftime(make_timestamp(CAST(round({_ANCHOR_EPOCH_S} + days * 86400 + h * 3600) AS BIGINT) * 1000000),
                           '%Y-%m-%dT%H:%M:%SZ') END AS ts,
        CASE WHEN copies > 1 THEN 'order_id is duplicated in orders.csv: ' || copies || ' rows'
             WHEN broken THEN 'days_since_prior_order or order_number is missing for this or an earlier order '
                              || 'of the user (the order cannot be placed in time)'
             WHEN h IS NULL OR h < 0 OR h >= 24 THEN 'order_hour_of_day is not 0..23: ''' || left(coalesce(h_s, ''), 40) || ''''
        END AS reason
    FROM placed
    """


def _instacart(paths: Sequence[Path], block_bytes: int) -> Iterator[RawBatch]:
    roles = classify(
        paths,
        {
            "orders": frozenset({"orderid", "userid", "ordernumber"}),
            "items": frozenset({"orderid", "productid"}),
            "products": frozenset({"productid", "aisleid"}),
        },
        [frozenset({"aisleid", "aisle"}), frozenset({"departmentid", "department"}), frozenset({"orderid", "products"})],
        _IC_ITEMS,
        _IC_EXPECTED,
    )
    if not roles["orders"]:
        raise InputError("no Instacart orders.csv among the inputs (needed for users and times)", f"give {_IC_EXPECTED}")
    if not roles["items"]:
        raise InputError("no Instacart order_products__*.csv among the inputs (the purchased products)", f"give {_IC_EXPECTED}")
    duck = Duck()
    try:
        for path, _, found, by_norm in roles["orders"]:
            require(path, found, by_norm, _IC_ORDERS, f"give {_IC_EXPECTED}")
        duck.create(
            "orders",
            _instacart_orders_sql([duck.csv(path, found) for path, _, found, _ in roles["orders"]]),
            roles["orders"][0][0],
        )
        category, join = "CAST(NULL AS VARCHAR) AS category_id", ""
        if roles["products"]:
            for path, _, found, by_norm in roles["products"]:
                require(path, found, by_norm, _IC_PRODUCTS, f"give {_IC_EXPECTED}")
            products = " UNION ALL ".join(
                f"SELECT trim(productid) AS key, nullif(trim(aisleid), '') AS category_id FROM {duck.csv(path, found)}"
                for path, _, found, _ in roles["products"]
            )
            duck.create("cat", f"SELECT key, any_value(category_id) AS category_id FROM ({products}) GROUP BY key", path)
            category, join = "cat.category_id", "LEFT JOIN cat ON cat.key = trim(b.item_id)"
        transform = duck.transform(
            f"""
            SELECT o.user_id, b.item_id, 'purchase' AS event, o.ts AS "timestamp", {category}, '1' AS quantity,
                   b.session_id,
                   CASE WHEN o.order_id IS NULL
                        THEN 'order_id is not in orders.csv: ''' || left(coalesce(b.session_id, ''), 40) || ''''
                        ELSE o.reason END AS _reason
            FROM b LEFT JOIN orders o ON o.order_id = trim(b.session_id) {join}
            ORDER BY b._pos
            """
        )
        for path, _, _found, by_norm in roles["items"]:
            columns = {by_norm["orderid"]: schema.SESSION, by_norm["productid"]: schema.ITEM}
            yield from csv_batches(path, columns=columns, block_bytes=block_bytes, transform=transform)
    finally:
        duck.close()


# --- Olist ----------------------------------------------------------------------------------

_OL_ORDERS = {
    "orderid": "order_id",
    "customerid": "customer_id",
    "orderstatus": "order_status",
    "orderpurchasetimestamp": "order_purchase_timestamp",
}
_OL_ITEMS = {"orderid": "order_id", "orderitemid": "order_item_id", "productid": "product_id", "price": "price"}
_OL_CUSTOMERS = {"customerid": "customer_id", "customeruniqueid": "customer_unique_id"}
_OL_PRODUCTS = {"productid": "product_id", "productcategoryname": "product_category_name"}
_OL_EXPECTED = (
    "Olist olist_orders_dataset.csv with olist_order_items_dataset.csv, optionally olist_customers_dataset.csv "
    "(real customers) and olist_products_dataset.csv (categories)"
)
OLIST_EXCLUDED_STATUSES = ("canceled", "unavailable")


def _olist(paths: Sequence[Path], block_bytes: int) -> Iterator[RawBatch]:
    roles = classify(
        paths,
        {
            "orders": frozenset({"orderid", "customerid", "orderstatus"}),
            "items": frozenset({"orderid", "orderitemid", "productid"}),
            "customers": frozenset({"customerid", "customeruniqueid"}),
            "products": frozenset({"productid", "productcategoryname"}),
        },
        [
            frozenset({"orderid", "paymentsequential"}),
            frozenset({"reviewid", "orderid"}),
            frozenset({"sellerid", "sellerzipcodeprefix"}),
            frozenset({"geolocationzipcodeprefix"}),
            frozenset({"productcategoryname", "productcategorynameenglish"}),
        ],
        _OL_ITEMS,
        _OL_EXPECTED,
    )
    if not roles["orders"]:
        raise InputError("no olist_orders_dataset.csv among the inputs (needed for customers and times)", f"give {_OL_EXPECTED}")
    if not roles["items"]:
        raise InputError("no olist_order_items_dataset.csv among the inputs (the purchased products)", f"give {_OL_EXPECTED}")
    needed = {"orders": _OL_ORDERS, "items": _OL_ITEMS, "customers": _OL_CUSTOMERS, "products": _OL_PRODUCTS}
    for role, columns in needed.items():
        for path, _, found, by_norm in roles[role]:
            require(path, found, by_norm, columns, f"give {_OL_EXPECTED}")

    duck = Duck()

    def union(role: str, select: str) -> str:
        return " UNION ALL ".join(f"SELECT {select} FROM {duck.csv(path, found)}" for path, _, found, _ in roles[role])

    try:
        duck.create(
            "orders",
            "SELECT order_id, any_value(customer_id) AS customer_id, any_value(status) AS status, "
            "any_value(ts) AS ts, count(*) AS copies FROM ("
            + union(
                "orders",
                "trim(orderid) AS order_id, trim(customerid) AS customer_id, "
                "lower(trim(orderstatus)) AS status, orderpurchasetimestamp AS ts",
            )
            + ") GROUP BY order_id",
            roles["orders"][0][0],
        )
        user, customer_join, customer_reason = "o.customer_id", "", ""
        if roles["customers"]:
            duck.create(
                "customers",
                "SELECT customer_id, any_value(unique_id) AS unique_id FROM ("
                + union("customers", "trim(customerid) AS customer_id, nullif(trim(customeruniqueid), '') AS unique_id")
                + ") GROUP BY customer_id",
                roles["customers"][0][0],
            )
            user = "coalesce(c.unique_id, o.customer_id)"
            customer_join = "LEFT JOIN customers c ON c.customer_id = o.customer_id"
            customer_reason = (
                "WHEN c.customer_id IS NULL THEN 'customer_id is not in olist_customers_dataset.csv: ''' "
                "|| left(coalesce(o.customer_id, ''), 40) || ''''"
            )
        category, category_join = "CAST(NULL AS VARCHAR) AS category_id", ""
        if roles["products"]:
            duck.create(
                "cat",
                "SELECT key, any_value(category_id) AS category_id FROM ("
                + union("products", "trim(productid) AS key, nullif(trim(productcategoryname), '') AS category_id")
                + ") GROUP BY key",
                roles["products"][0][0],
            )
            category, category_join = "cat.category_id", "LEFT JOIN cat ON cat.key = g.product_id"
        excluded = ", ".join(f"'{s}'" for s in OLIST_EXCLUDED_STATUSES)
        query = f"""
        WITH g AS (
            SELECT trim(order_id) AS order_id, trim(item_id) AS product_id, min({LINE}) AS {LINE}, count(*) AS n,
                   count(p) AS n_price, min(p) AS lo, max(p) AS hi, avg(p) AS mean,
                   arg_min(price, {LINE}) FILTER (WHERE p IS NULL) AS bad_price
            FROM (SELECT *, try_cast(trim(price) AS DOUBLE) AS p FROM items)
            -- a row without order or product (a blank line, say) stays a row of its own
            GROUP BY 1, 2, CASE WHEN coalesce(trim(order_id), '') = '' OR coalesce(trim(item_id), '') = '' THEN {LINE} END
        )
        SELECT {user} AS user_id, g.product_id AS item_id, 'purchase' AS event, o.ts AS "timestamp", {category},
               CASE WHEN n_price < n THEN bad_price WHEN lo = hi THEN CAST(lo AS VARCHAR) ELSE CAST(mean AS VARCHAR) END AS price,
               CAST(n AS VARCHAR) AS quantity, g.order_id AS session_id,
               CASE WHEN o.order_id IS NULL
                    THEN 'order_id is not in olist_orders_dataset.csv: ''' || left(coalesce(g.order_id, ''), 40) || ''''
                    WHEN o.copies > 1 THEN 'order_id is duplicated in olist_orders_dataset.csv: ' || o.copies || ' rows'
                    WHEN o.status IN ({excluded}) THEN 'order status ' || o.status
                    {customer_reason}
               END AS {REASON},
               g.{LINE}
        FROM g LEFT JOIN orders o ON o.order_id = g.order_id {customer_join} {category_join}
        ORDER BY g.{LINE}
        """
        for path, _, _found, by_norm in roles["items"]:
            duck.con.execute(f"CREATE OR REPLACE TABLE items (order_id VARCHAR, item_id VARCHAR, price VARCHAR, {LINE} BIGINT)")
            columns = {by_norm["orderid"]: "order_id", by_norm["productid"]: schema.ITEM, by_norm["price"]: schema.PRICE}
            for batch in csv_batches(path, columns=columns, block_bytes=block_bytes):
                if REASON in batch.table.column_names:  # rows with the wrong number of fields
                    yield batch
                    continue
                duck.con.register("item_batch", batch.table)
                try:
                    duck.con.execute(f"INSERT INTO items SELECT order_id, item_id, price, {LINE} FROM item_batch")
                finally:
                    duck.con.unregister("item_batch")
            yield from duck_batches(duck, query, path, max(block_bytes // 128, 10_000))
    finally:
        duck.close()


READERS: list[Reader] = [
    Reader(
        "instacart",
        "Instacart orders.csv + order_products__prior/train.csv (+ products.csv: aisle as category); no real "
        f"times: order time = {INSTACART_ANCHOR} + cumulative days_since_prior_order + order_hour_of_day",
        _instacart,
    ),
    Reader(
        "olist",
        "Olist orders + order items (+ customers, products): one purchase per order and product, quantity = units; "
        "without olist_customers_dataset.csv the user is customer_id, which is new for every order",
        _olist,
    ),
]

__all__ = ["INSTACART_ANCHOR", "OLIST_EXCLUDED_STATUSES", "READERS"]
