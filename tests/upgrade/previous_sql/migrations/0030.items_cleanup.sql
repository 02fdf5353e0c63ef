-- pgjobs 0030: the fan-out stop is one routine. pgjobs._items_cancel and
-- pgjobs._items_pause (0025) repeated each other's update, check and event;
-- pgjobs._items_stop(id, 'canceled' | 'paused') replaces both, with the
-- same behaviour. Catalog-only: no table changes, no data touched.
-- depends: 0029.exclusions

DROP FUNCTION IF EXISTS pgjobs._items_cancel(bigint);
DROP FUNCTION IF EXISTS pgjobs._items_pause(bigint);
