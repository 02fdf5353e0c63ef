-- pgjobs 0215: migration 0195 rewrote the reg* names of unfinished jobs
-- (queued, running, paused) to oids, with two gaps, closed here:
-- * a job that ended failed or canceled before the upgrade: pgjobs.retry
--   queues it again with the predicate and exclude list it stored, so a
--   pre-65 delete retried after the upgrade read its names again, and a
--   rename between the upgrade and the retry deleted the excluded row and
--   kept the other;
-- * a name %L wrote as an E'' literal (one with a backslash: a table
--   "e\b"): 0195 left it, so a rename after the upgrade moved that filter
--   value or exclude list to another table's rows.
-- (tests/test_upgrade_reg_names.py). This is 0195's rewrite, for those
-- states too, with E'' literals read (their doubled backslashes halved;
-- the oid written after the E is the same string). 0195 cannot change (a
-- migration that landed never does) and a migration calls no pgjobs
-- function, so its block is repeated here. Run again over 0195's jobs it
-- changes nothing else: their values are oids now (digits are left). One
-- more difference: the exclude list in jobs.survivors is set to oids only
-- when the predicate's own list was (0195 set it whenever a filter value
-- was rewritten). Read once, here, as the names read now. Calls no pgjobs
-- function.
-- depends: 0196.reg_values_to_oids

DO $migration$
DECLARE
    v_job record;
    v_types constant text[] := ARRAY['regclass', 'regcollation', 'regconfig', 'regdictionary',
                                     'regnamespace', 'regoper', 'regoperator', 'regproc',
                                     'regprocedure', 'regrole', 'regtype'];
    v_tokens text[];
    v_out text;
    v_whole text;
    v_token text;
    v_next text;
    v_type text;
    v_value text;
    v_oid text;
    v_exclude jsonb;
    v_keys text[];
    v_oids text[];
    v_changed boolean;
    v_listed boolean;
    i integer;
BEGIN
    FOR v_job IN
        SELECT j.id, j.predicate, j.survivors FROM pgjobs.jobs j
         WHERE j.status IN ('queued', 'running', 'paused', 'failed', 'canceled')
           AND j.predicate ~ '::pg_catalog\.reg[a-z]+'
           FOR UPDATE
    LOOP
        BEGIN
            -- The exclude list's names, read as their type reads them now.
            v_exclude := v_job.survivors -> 'exclude';
            v_keys := NULL;
            v_oids := NULL;
            IF jsonb_typeof(v_exclude) = 'array' AND jsonb_array_length(v_exclude) > 0
               AND v_job.survivors ->> 'key_type' = ANY (v_types)
               AND EXISTS (SELECT FROM jsonb_array_elements_text(v_exclude) e
                            WHERE e !~ '^[0-9]+$') THEN
                v_keys := ARRAY(SELECT jsonb_array_elements_text(v_exclude));
                EXECUTE format('SELECT array_agg((%s)::pg_catalog.oid::pg_catalog.text '
                               'ORDER BY o) FROM unnest($1) WITH ORDINALITY u(e, o)',
                               CASE WHEN v_job.survivors ->> 'key_type' = 'regclass'
                                    THEN 'pg_catalog.regclassin(e::pg_catalog.cstring)'
                                    ELSE format('e::pg_catalog.%s',
                                                v_job.survivors ->> 'key_type') END)
                   INTO v_oids USING v_keys;
            END IF;
            -- Tokens: a quoted identifier, a literal, or a run of neither.
            v_tokens := ARRAY(SELECT m[1] FROM regexp_matches(
                                  v_job.predicate, '("(?:[^"]|"")*"|''(?:[^'']|'''')*''|[^''"]+)',
                                  'g') m);
            v_out := '';
            v_whole := '';
            v_changed := false;
            v_listed := false;
            FOR i IN 1 .. coalesce(array_length(v_tokens, 1), 0) LOOP
                v_token := v_tokens[i];
                v_whole := v_whole || v_token;
                v_next := coalesce(v_tokens[i + 1], '');
                v_type := substring(v_next FROM '^::pg_catalog\.(reg[a-z]+)(?![a-z0-9_$])');
                IF left(v_token, 1) = '''' AND v_type = ANY (v_types) THEN
                    v_value := replace(substr(v_token, 2, length(v_token) - 2), '''''', '''');
                    IF right(v_tokens[i - 1], 1) = 'E' THEN
                        -- %L's E'' form: only its backslashes doubled
                        v_value := replace(v_value, repeat(chr(92), 2), chr(92));
                    END IF;
                    IF substr(v_next, length(v_type) + 14, 2) = '[]' THEN
                        -- The exclude list's array: the stored list, by oid.
                        IF v_keys IS NOT NULL AND v_value = v_keys::text THEN
                            v_token := quote_literal(v_oids::text);
                            v_changed := true;
                            v_listed := true;
                        END IF;
                    ELSIF v_value !~ '^[0-9]+$' THEN
                        -- A filter value: its oid.
                        EXECUTE format('SELECT (%s)::pg_catalog.oid::pg_catalog.text',
                                       CASE WHEN v_type = 'regclass'
                                            THEN 'pg_catalog.regclassin($1::pg_catalog.cstring)'
                                            ELSE format('$1::pg_catalog.%s', v_type) END)
                           INTO v_oid USING v_value;
                        v_token := quote_literal(v_oid);
                        v_changed := true;
                    END IF;
                END IF;
                v_out := v_out || v_token;
            END LOOP;
            -- (a predicate the tokens do not cut whole is left as it is)
            IF v_changed AND v_whole = v_job.predicate THEN
                UPDATE pgjobs.jobs j
                   SET predicate = v_out,
                       survivors = CASE WHEN NOT v_listed
                                        THEN j.survivors
                                        ELSE jsonb_set(j.survivors, '{exclude}',
                                                       to_jsonb(v_oids)) END
                 WHERE j.id = v_job.id;
            END IF;
        EXCEPTION WHEN OTHERS THEN
            -- A name of no object now: the job keeps what it stored.
            NULL;
        END;
    END LOOP;
END
$migration$;
