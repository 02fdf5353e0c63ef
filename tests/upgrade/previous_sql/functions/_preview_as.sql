CREATE OR REPLACE FUNCTION pgjobs._preview_as(
    p_caller name,
    p_target regclass,
    p_scope text,
    p_filter jsonb,
    p_exclude text[],
    p_options jsonb)
RETURNS jsonb
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
AS $$
-- The body of pgjobs.preview, run as pgjobs' owner for the role p_caller
-- (the current_user of pgjobs.preview, its only permitted caller: pgjobs._enter,
-- 42501 otherwise); every check below is of p_caller (pgjobs._caller).
-- What a delete (options {"kind": "delete"}, the default) or a backfill
-- ({"kind": "backfill"}: no exclude) of scope p_scope matching p_filter,
-- submitted now, would do. Writes nothing. The predicate is compiled by
-- the very path the submits take (pgjobs._row_predicate, same cutoff: now),
-- the unknown fields found as the submits find them
-- (pgjobs._unknown_fields, so the list is what a submit would refuse; an
-- empty scope has none: its paths are listed in "unchecked_fields", which
-- the job would judge at its first attempt, pgjobs._fields_unchecked), a
-- comparison whose operand's JSON type no row holds refused as the submits
-- refuse it (pgjobs._require_value_types: 22023, unless
-- allow_unknown_fields), and
-- the rows counted by pgjobs._preview_count
-- (rows a pending delete will remove first are not counted as matches;
-- the mask's count form, pgjobs._mask: a pending delete's long exclude
-- list is hashed, not probed per row).
-- Returns {"kind", "target", "scope" (canonical), "predicate", "matches",
-- "exact", "scope_rows", "sample", "unknown_fields", "unknown_fields_exact",
-- "unchecked_fields", "judged_at_start" (the submit would defer its filter's
-- judgment to the job's start: unchecked_fields, or a json column's value
-- check on an empty scope, which lists no path), "counted_rows",
-- "elapsed_ms", "time_limit_ms"}.
-- Options: kind, time_limit_ms (0..600000, default 2000: counting stops at
-- the first chunk boundary past it and the rest is estimated), set (a
-- backfill's: compiled as its submit compiles it, 22023 alike, and the
-- result adds "non_object_rows" and "non_object_first": the rows the
-- submit would refuse, whose document holds a scalar or an array where
-- set merges fields in, pgjobs._set_blocked_rows; replace_non_objects
-- true, as the job's option, counts none), replace_non_objects, and
-- allow_unknown_fields (accepted and validated so a client can pass the
-- job's options; the preview lists unknown fields either way, and lets a
-- comparison of a type no row holds through, as the submit would).
-- Raises 22023 as the submit would for a bad scope, filter, exclusion or
-- option. SECURITY DEFINER for pgjobs_client: the caller needs DELETE (a
-- backfill: UPDATE) and SELECT on the target, and the scope in
-- pgjobs.allowed_scopes when set (42501).
-- Locks: the target in ACCESS SHARE mode, as any read of it, to the end of
-- the caller's transaction, waited for at most the caller's lock_timeout,
-- or 10 s when none is set: the count's time limit never covered that
-- wait, and a preview (and the `pgjobs delete` that asks with it) behind
-- an ALTER TABLE, LOCK TABLE or VACUUM FULL not yet committed hung for as
-- long as that transaction, printing nothing. Past the wait this raises
-- 55P03 naming the holding session (pgjobs._lock_holders).
DECLARE
    v_reg pgjobs.target_registry;
    v_options jsonb := p_options;  -- NULL is refused below, as every submit does
    v_kind text := 'delete';
    v_limit_ms integer := 2000;
    v_key text;
    v_scope text;
    v_predicate text;
    v_check record;
    v_unchecked text[];
    v_paths text[];
    v_timeout text := current_setting('lock_timeout');
    v_wait text;
    v_holders text;
    v_replace boolean;
    v_blocked_rows bigint := 0;
    v_blocked_first jsonb;
BEGIN
    p_caller := pgjobs._enter('preview', p_caller) AS sealed_call;  -- 42501 for any other caller (alias: pgjobs._sealed_frame)
    -- The privileges of the kind previewed, from the options alone, before
    -- the registry is read (pgjobs._require_entry): a bad kind is refused
    -- below, after them, alike for every table.
    PERFORM pgjobs._require_entry(p_target, pgjobs._kind_privilege(
        CASE WHEN jsonb_typeof(p_options) = 'object' AND p_options ->> 'kind' = 'backfill'
             THEN 'backfill' ELSE 'delete' END) || ', SELECT');
    v_reg := pgjobs._target_recent(p_target);
    IF jsonb_typeof(v_options) IS DISTINCT FROM 'object' THEN
        RAISE EXCEPTION 'options must be a JSON object' USING ERRCODE = '22023',
            HINT = 'Pass ''{}'' for the defaults.';
    END IF;
    FOR v_key IN SELECT k FROM jsonb_object_keys(v_options) k LOOP
        IF NOT v_key = ANY (ARRAY['kind', 'time_limit_ms', 'allow_unknown_fields', 'set',
                                  'replace_non_objects', 'allow_unknown_keys']) THEN
            RAISE EXCEPTION 'unknown option "%" for a preview', v_key
                USING ERRCODE = '22023',
                HINT = 'Valid options: kind, time_limit_ms, allow_unknown_fields, set, '
                       'replace_non_objects, allow_unknown_keys.';
        END IF;
    END LOOP;
    IF v_options ? 'kind' THEN
        IF (v_options ->> 'kind' = ANY (pgjobs._engine_kinds())) IS NOT TRUE THEN
            RAISE EXCEPTION 'option "kind" must be "delete" or "backfill", not %',
                v_options -> 'kind'
                USING ERRCODE = '22023', HINT = 'Leave it out to preview a delete.';
        END IF;
        v_kind := v_options ->> 'kind';
    END IF;
    IF v_options ? 'time_limit_ms' THEN
        v_limit_ms := pgjobs._option_int('time_limit_ms', v_options -> 'time_limit_ms',
                                         0, 600000);
    END IF;
    PERFORM pgjobs._option_bool('allow_unknown_fields', v_options -> 'allow_unknown_fields');
    IF (v_options ? 'set' OR v_options ? 'replace_non_objects') AND v_kind <> 'backfill' THEN
        RAISE EXCEPTION 'options "set" and "replace_non_objects" are a backfill''s'
            USING ERRCODE = '22023', HINT = 'Pass {"kind": "backfill", "set": {...}}.';
    END IF;
    v_replace := coalesce(pgjobs._option_bool('replace_non_objects',
                                              v_options -> 'replace_non_objects'), false);
    IF v_options ? 'set' THEN
        PERFORM pgjobs._compile_set(v_reg, v_options -> 'set');  -- 22023 as the submit
    END IF;
    PERFORM pgjobs._require(p_target, CASE v_kind WHEN 'delete' THEN 'DELETE' ELSE 'UPDATE' END);
    PERFORM pgjobs._require(p_target, 'SELECT');
    IF v_kind = 'backfill' AND cardinality(coalesce(p_exclude, '{}')) > 0 THEN
        RAISE EXCEPTION 'a backfill has no exclude list' USING ERRCODE = '22023',
            HINT = 'Leave the keys out of the filter instead, e.g. {"$not": {"id": {"$in": [...]}}}.';
    END IF;
    v_scope := pgjobs._canonical_scope(v_reg, p_scope);
    PERFORM pgjobs._require_scope(p_target, v_scope);
    -- (A NULL filter raises 22023 there, as the delete it previews would.)
    v_predicate := pgjobs._row_predicate(v_reg, p_scope, p_filter, p_exclude, now());
    v_wait := CASE WHEN v_timeout IN ('0', '0ms', '0s') THEN '10s' ELSE v_timeout END;
    BEGIN
        PERFORM set_config('lock_timeout', v_wait, true);
        PERFORM pgjobs._hold_target(p_target);
    EXCEPTION WHEN lock_not_available THEN
        v_holders := pgjobs._lock_holders(p_target, NULL);
        RAISE EXCEPTION 'waited % for table %: %', v_wait, p_target,
                        coalesce(v_holders || ' holds it',
                                 'the session that held it let go just now')
            USING ERRCODE = '55P03',
                  HINT = 'Preview again once that transaction ends (an ALTER TABLE, LOCK TABLE '
                         'or VACUUM FULL not yet committed?); if it does not end, end it: '
                         'SELECT pg_terminate_backend(pid).';
    END;
    PERFORM set_config('lock_timeout', v_timeout, true);
    v_paths := (pgjobs._compile_filter(p_target, p_filter)).p_paths;
    SELECT * INTO v_check FROM pgjobs._unknown_fields(v_reg, v_scope, v_paths);
    v_unchecked := pgjobs._fields_unchecked(v_reg, v_scope, v_paths, v_options);
    -- A comparison whose operand's JSON type no row holds at its path is
    -- refused (22023) as the submit refuses it (pgjobs._judge_filter), unless
    -- allow_unknown_fields: the preview of `pgjobs delete` must not show a
    -- count the submit would then refuse.
    PERFORM pgjobs._require_value_types(v_reg, v_scope, p_filter, v_options);
    -- An excluded key that names no row of the scope is refused as the
    -- submit refuses it (pgjobs._require_known_keys), unless
    -- allow_unknown_keys: a dry run must not show a count the submit then
    -- refuses, nor a preview pass a key that keeps nothing.
    PERFORM pgjobs._require_known_keys(v_reg, v_scope, p_exclude, v_options);
    IF v_options ? 'set' AND NOT v_replace THEN
        SELECT b.rows, CASE WHEN b.rows > 0 THEN jsonb_build_object(
                   'key', b.key, 'path', b.path, 'type', b.json_type) END
          INTO v_blocked_rows, v_blocked_first
          FROM pgjobs._set_blocked_rows(v_reg, v_scope, v_predicate, v_options -> 'set') b;
    END IF;
    RETURN pgjobs._leave(CASE WHEN v_options ? 'set' THEN jsonb_build_object(
               'non_object_rows', v_blocked_rows, 'non_object_first', v_blocked_first)
                ELSE '{}'::jsonb END
           || jsonb_build_object(
               'kind', v_kind,
               'target', p_target::text,
               'scope', v_scope,
               'predicate', v_predicate,
               'unknown_fields', to_jsonb(v_check.p_unknown),
               -- The scope has no row: the job would judge these at its start.
               'unchecked_fields', to_jsonb(coalesce(v_unchecked, '{}')),
               -- Whether the submit would defer its filter's judgment to the
               -- job's start (payload unchecked_fields, the list empty when it
               -- is a json column's value check: pgjobs._judge_filter).
               'judged_at_start', v_unchecked IS NOT NULL
                   OR (NOT coalesce(pgjobs._option_bool('allow_unknown_fields',
                                        v_options -> 'allow_unknown_fields'), false)
                       AND pgjobs._json_values_deferred(v_reg, v_scope, p_filter)),
               'unknown_fields_exact', v_check.p_complete,
               'time_limit_ms', v_limit_ms)
           || pgjobs._preview_count(v_reg, v_scope, v_predicate,
                                    pgjobs._mask(p_target, v_scope, true), v_limit_ms));
END
$$;
