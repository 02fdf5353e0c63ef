CREATE OR REPLACE FUNCTION pgjobs._mask_candidates(p_target regclass, p_scope text,
                                                   p_count boolean DEFAULT false)
RETURNS text
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The read path's short cut past a whole-scope delete. A delete without a
-- filter dooms every row of its scope that existed at its submit, except
-- the keys it excludes; a row of the scope the mask lets through is
-- therefore dated at or after the job's horizon (pgjobs._cutoff_clause:
-- the horizon is never later than the cutoff), or has no created_at, or
-- is excluded. This returns that condition, ANDed over the scope's pending
-- whole-scope deletes, as one SQL boolean over the target's unqualified
-- columns ('true' when no pending delete narrows the scope):
--   (created_at >= <horizon> OR created_at IS NULL [OR key = ANY (<excluded>)])
-- (a list in pgjobs.job_exclusions: OR EXISTS (SELECT FROM
-- pgjobs.job_exclusions ...), the predicate's own clause,
-- pgjobs._exclusion_clause; no index serves that arm)
-- p_count (pgjobs.visible_count): such a job's part is left out. No index
-- serves it and the mask (pgjobs._mask) tests the same keys, so in a
-- count it would only read the list a second time; leaving a part out
-- keeps the condition implied by the mask.
-- For a row of p_scope the mask (pgjobs._mask) implies it, so a read may
-- add it next to the mask without changing its result; an index on
-- (scope, created_at) then finds the few rows that can be visible instead
-- of walking past every doomed one. It is NOT a mask: for rows of other
-- scopes it is false.
-- It is built from what the submit stored as data (jobs.survivors, from
-- pgjobs._row_selection): the horizon's literal is written by
-- pgjobs._time_literal and the excluded keys' by format('%L::<key type>[]'),
-- as the predicate writes them. A delete with a filter or a horizon of
-- -infinity narrows nothing. Deletes submitted before jobs.survivors
-- existed (it is NULL) are read the old way: the literals taken verbatim
-- from the stored predicate, checked piece by piece against the text
-- pgjobs._row_predicate and pgjobs._cutoff_clause wrote then; a predicate
-- of any other shape narrows nothing. Canonical p_scope. Locks nothing.
DECLARE
    v_reg pgjobs.target_registry;
    v_job record;
    v_rest text;
    v_head text;
    v_horizon text;
    v_tail text;
    v_parts text[] := '{}'::text[];
    v_scope_head text;
    v_scope_head_op text;
    v_op boolean;
    v_literal constant text := '^''[0-9A-Za-z:.+ -]*''::(?:pg_catalog\.)?timestamp(?:tz)?';
BEGIN
    -- Most reads find no pending delete: answer them before any other work.
    IF NOT EXISTS (SELECT 1 FROM pgjobs.jobs j
                    WHERE j.target = p_target AND j.scope = p_scope
                      AND j.writes AND j.kind = 'delete' AND j.status IN ('queued', 'running', 'paused')) THEN
        RETURN 'true';
    END IF;
    SELECT r.* INTO v_reg FROM pgjobs.target_registry r WHERE r.target = p_target;
    IF NOT FOUND THEN
        RETURN 'true';
    END IF;
    FOR v_job IN
        SELECT j.id, j.predicate, j.survivors
          FROM pgjobs.jobs j
         WHERE j.target = p_target AND j.scope = p_scope
           AND j.writes AND j.kind = 'delete' AND j.status IN ('queued', 'running', 'paused')
           -- Left out of the mask (pgjobs._mask) when its columns changed
           -- (pgjobs._columns_same's test, spelled out as there).
           AND (j.target_columns IS NULL
                OR NOT EXISTS (
                    SELECT FROM jsonb_to_recordset(j.target_columns)
                                AS c(n smallint, name name, type oid, typmod integer,
                                     "collation" oid, labels jsonb)
                     WHERE NOT EXISTS (
                           SELECT FROM pg_catalog.pg_attribute a
                            WHERE a.attrelid = p_target AND a.attnum = c.n
                              AND a.attname = c.name AND a.atttypid = c.type
                              AND a.atttypmod = c.typmod AND a.attcollation = c."collation"
                              AND NOT a.attisdropped)
                       OR (c.labels IS NOT NULL
                           AND EXISTS (SELECT FROM jsonb_each_text(c.labels) l
                                        WHERE NOT EXISTS (
                                              SELECT FROM pg_catalog.pg_enum e
                                               WHERE e.oid = l.key::oid
                                                 AND e.enumlabel = l.value::name)))))
         ORDER BY j.id
    LOOP
        IF v_job.survivors IS NOT NULL THEN
            v_horizon := v_job.survivors ->> 'horizon';
            CONTINUE WHEN NOT coalesce((v_job.survivors -> 'whole_scope')::boolean, false)
                          OR v_horizon IS NULL OR NOT isfinite(v_horizon::timestamptz);
            v_horizon := pgjobs._time_literal(v_horizon::timestamptz,
                v_job.survivors ->> 'created_at_type' = 'timestamp',
                v_job.survivors ->> 'time_zone');
            -- The columns as the predicate names them (a later
            -- register_target may name others).
            CONTINUE WHEN p_count AND v_job.survivors ->> 'exclusions' = 'table';
            IF v_job.survivors ->> 'exclusions' = 'table' THEN
                -- A long list, probed in pgjobs.job_exclusions by the
                -- predicate's own clause (pgjobs._exclusion_clause).
                v_parts := v_parts || format('(%1$I OPERATOR(pg_catalog.>=) %2$s OR %1$I IS NULL '
                                             'OR %3$s)',
                    v_job.survivors ->> 'created_at_column', v_horizon,
                    pgjobs._exclusion_clause(v_job.survivors ->> 'key_column',
                        v_job.survivors ->> 'key_type', NULL, v_job.id));
            ELSIF jsonb_array_length(v_job.survivors -> 'exclude') = 0 THEN
                v_parts := v_parts || format('(%1$I OPERATOR(pg_catalog.>=) %2$s OR %1$I IS NULL)',
                                             v_job.survivors ->> 'created_at_column', v_horizon);
            ELSE
                v_parts := v_parts || format('(%1$I OPERATOR(pg_catalog.>=) %2$s OR %1$I IS NULL '
                                             'OR %3$I OPERATOR(pg_catalog.=) ANY (%4$s))',
                    v_job.survivors ->> 'created_at_column', v_horizon,
                    v_job.survivors ->> 'key_column',
                    format('%L::%s[]', ARRAY(SELECT jsonb_array_elements_text(
                                                 v_job.survivors -> 'exclude')),
                           pgjobs._type_sql(v_job.survivors ->> 'key_type')));
            END IF;
            CONTINUE;
        END IF;
        -- Submitted before jobs.survivors: parse the stored predicate,
        -- "<scope> = <literal> AND coalesce(<created_at> <= <cutoff>, true) AND (",
        -- its operators written plainly (as releases before this one did) or
        -- OPERATOR(pg_catalog.x) (pgjobs._row_selection now): v_op says which.
        IF v_scope_head IS NULL THEN
            v_scope_head := format('%I = %s AND coalesce(%I <= ', v_reg.scope_column,
                                   pgjobs._scope_literal(v_reg, p_scope), v_reg.created_at_column);
            v_scope_head_op := format('%I OPERATOR(pg_catalog.=) %s AND coalesce(%I '
                                      'OPERATOR(pg_catalog.<=) ', v_reg.scope_column,
                                      pgjobs._scope_literal(v_reg, p_scope),
                                      v_reg.created_at_column);
        END IF;
        CONTINUE WHEN v_job.predicate IS NULL;
        v_op := starts_with(v_job.predicate, v_scope_head_op);
        CONTINUE WHEN NOT v_op AND NOT starts_with(v_job.predicate, v_scope_head);
        v_rest := substr(v_job.predicate, length(CASE WHEN v_op THEN v_scope_head_op
                                                      ELSE v_scope_head END) + 1);
        v_head := substring(v_rest FROM v_literal);
        CONTINUE WHEN v_head IS NULL;
        v_rest := substr(v_rest, length(v_head) + 1);
        -- "<created_at> < <horizon> OR (xmin tests)) AND (true)[ AND NOT (<key> = ANY (...))]"
        v_head := format(CASE WHEN v_op THEN ', true) AND (%I OPERATOR(pg_catalog.<) '
                              ELSE ', true) AND (%I < ' END, v_reg.created_at_column);
        CONTINUE WHEN NOT starts_with(v_rest, v_head);
        v_rest := substr(v_rest, length(v_head) + 1);
        v_horizon := substring(v_rest FROM v_literal);
        CONTINUE WHEN v_horizon IS NULL OR starts_with(v_horizon, '''-infinity''');
        v_rest := substr(v_rest, length(v_horizon) + 1);
        IF v_op THEN
            v_tail := substring(v_rest FROM
                '^ OR \(pg_catalog\.age\(xmin\)::bigint OPERATOR\(pg_catalog\.&\) 4294967295\) '
                'OPERATOR\(pg_catalog\.>\) \(SELECT pg_catalog\.age\(''[0-9]+''::pg_catalog\.xid\)\)'
                '(?: AND NOT xmin OPERATOR\(pg_catalog\.=\) ANY '
                '\(''\{[0-9,]*\}''::pg_catalog\.xid\[\]\))?'
                ' OR xmin OPERATOR\(pg_catalog\.=\) ''[0-9]+''::pg_catalog\.xid\) AND \(true\)(.*)$');
        ELSE
            v_tail := substring(v_rest FROM
                '^ OR \(pg_catalog\.age\(xmin\)::bigint & 4294967295\) > '
                '\(SELECT pg_catalog\.age\(''[0-9]+''::xid\)\)'
                '(?: AND NOT xmin = ANY \(''\{[0-9,]*\}''::xid\[\]\))?'
                ' OR xmin = ''[0-9]+''::xid\) AND \(true\)(.*)$');
        END IF;
        CONTINUE WHEN v_tail IS NULL;
        IF v_tail = '' THEN
            v_parts := v_parts || format('(%1$I OPERATOR(pg_catalog.>=) %2$s OR %1$I IS NULL)',
                                         v_reg.created_at_column, v_horizon);
        ELSIF (starts_with(v_tail, format(CASE WHEN v_op
                                               THEN ' AND NOT (%I OPERATOR(pg_catalog.=) ANY ('
                                               ELSE ' AND NOT (%I = ANY (' END,
                                          v_reg.key_column))
               OR starts_with(v_tail, ' AND NOT (EXISTS (SELECT FROM pgjobs.job_exclusions x '))
              AND right(v_tail, 2) = '))' THEN
            v_parts := v_parts || format('(%1$I OPERATOR(pg_catalog.>=) %2$s OR %1$I IS NULL '
                                         'OR %3$s)',
                                         v_reg.created_at_column, v_horizon,
                                         substr(v_tail, 11, length(v_tail) - 11));
        END IF;
    END LOOP;
    IF cardinality(v_parts) = 0 THEN
        RETURN 'true';
    END IF;
    RETURN array_to_string(v_parts, ' AND ');
END
$$;
