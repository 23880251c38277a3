"""Great-circle distance exactly as ksqlDB's GEO_DISTANCE computes it, and Java's
text for a double.

Hand-written rather than taken from a library on purpose: alerts must reproduce the
seed's figures to the last bit (453.87740037465375 km for its example), so the
formula, the radius (6371 km; the ``haversine`` package uses 6371.0088) and even
the order of floating-point operations follow ksqlDB's ``GeoDistance`` UDF.
"""

from __future__ import annotations

import math
from decimal import Decimal

EARTH_RADIUS_KM = 6371.0


def geo_distance_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Haversine distance in km, operation for operation like ksqlDB's GEO_DISTANCE."""
    delta_lat = math.radians(lat2 - lat1)
    delta_lon = math.radians(lon2 - lon1)
    a = math.pow(math.sin(delta_lat / 2), 2) + math.cos(math.radians(lat1)) * math.cos(
        math.radians(lat2)
    ) * math.pow(math.sin(delta_lon / 2), 2)
    return 2 * math.atan2(math.sqrt(a), math.sqrt(1 - a)) * EARTH_RADIUS_KM


def java_double_str(value: float) -> str:
    """``String.valueOf(double)`` as ksqlDB's ``CAST(x AS STRING)`` prints it.

    Python's ``repr`` gives the same shortest digits; only the switch to scientific
    notation differs (Java: below 1e-3 or from 1e7 on, as ``1.0E-4``).
    """
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if value == 0 or 1e-3 <= abs(value) < 1e7:
        return repr(float(value))
    sign, digits, exponent = Decimal(repr(float(value))).as_tuple()
    text = "".join(map(str, digits)).rstrip("0") or "0"
    scientific = len(digits) + int(exponent) - 1
    return f"{'-' if sign else ''}{text[0]}.{text[1:] or '0'}E{scientific}"
