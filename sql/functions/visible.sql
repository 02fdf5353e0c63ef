CREATE OR REPLACE FUNCTION pgjobs.visible(
    p_target regclass,
    p_scope text,
    p_filter jsonb DEFAULT '{}',
    p_after text DEFAULT NULL,
    p_limit integer DEFAULT 100)
RETURNS SETOF jsonb
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
AS $$
-- One keyset page of the rows of (p_target, p_scope) that match p_filter
-- and are not masked by a pending delete, ordered by key, starting after
-- key p_after, as to_jsonb(row). Walks the (scope, key) index: the cost of
-- a page does not grow with its position. Raises 22023 for a bad filter,
-- scope, cursor or limit. For pgjobs_client; the caller
-- needs SELECT on the target and, when pgjobs.allowed_scopes is set,
-- p_scope in it (42501). Locks nothing.
-- SECURITY INVOKER on purpose: current_user here is the role the call acts
-- for (the owner of a SECURITY DEFINER function that calls it, the table
-- owner in a maintenance command, the SET ROLE role), and the SECURITY
-- DEFINER pgjobs._visible_as checks that role's rights.
DECLARE
    v_row jsonb;
    v_page text;
    v_rows jsonb[];
BEGIN
    -- The short way (issue 11): a plain page (no filter, nothing masked, no
    -- row-level security, pgjobs._visible_page says which) is read as the
    -- caller, so PostgreSQL checks its privileges as on any query of its
    -- own, every call. Only a table-wide SELECT takes it: SELECT granted
    -- on every column (which the full way also accepts,
    -- pgjobs._reads_every_column) goes the full way, whose check follows
    -- the table's columns as they are now. Any error of the page (a
    -- privilege PostgreSQL refuses, such as USAGE on the table's schema; a
    -- bad scope or cursor; a json value to_jsonb refuses) sends the call the
    -- full way, which raises what it raises or reads what it reads, as
    -- before; an error of the session is raised (below).
    IF has_table_privilege(p_target, 'SELECT') IS TRUE AND p_filter = '{}' THEN
        BEGIN
            v_page := pgjobs._visible_page(p_target, p_scope, p_after, p_limit);
            IF v_page IS NOT NULL THEN
                EXECUTE v_page INTO v_rows;
            END IF;
        EXCEPTION WHEN OTHERS THEN
            -- An error of the session rather than of the page reaches the
            -- caller from here, never tried again the full way (which would
            -- wait out the same lock, or meet the same conflict, a second
            -- time, and answer with its own context): a transaction to roll
            -- back and retry (40: serialization, deadlock, a conflict with
            -- recovery), resources (53), a lock not granted in lock_timeout
            -- or an object in use (55P03, 55006), an operator's intervention
            -- (57; a cancel, 57014, no handler catches), a system or
            -- internal error (58, XX).
            IF left(SQLSTATE, 2) IN ('40', '53', '57', '58', 'XX')
               OR SQLSTATE IN ('55P03', '55006') THEN
                RAISE;
            END IF;
            v_page := NULL;  -- the full way
        END;
        -- (rows are returned outside the block: none twice after an error)
        IF v_page IS NOT NULL THEN
            FOREACH v_row IN ARRAY coalesce(v_rows, '{}') LOOP
                RETURN NEXT v_row;
            END LOOP;
            RETURN;
        END IF;
    END IF;
    -- the alias lets in this call's frame after an error (pgjobs._sealed_frame)
    FOREACH v_row IN ARRAY pgjobs._visible_as(current_user, p_target, p_scope, p_filter, p_after, p_limit) AS sealed_call LOOP
        RETURN NEXT v_row;
    END LOOP;
END
$$;

COMMENT ON FUNCTION pgjobs.visible(regclass, text, jsonb, text, integer) IS
'One keyset page (ordered by key, after key p_after, at most p_limit rows) of the scope''s rows '
'matching the filter and not masked by a pending delete, as to_jsonb(row).';
