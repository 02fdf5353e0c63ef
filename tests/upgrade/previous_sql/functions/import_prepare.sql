CREATE OR REPLACE FUNCTION pgjobs.import_prepare(p_id bigint, p_worker text, p_fields text[])
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- For the worker running import p_id as p_worker (the claim's identity):
-- checks the fields the source names (a CSV header; NULL for JSONL, whose
-- records name their own) against the target (22023 naming the field:
-- the import cannot succeed; 54011 for more than 1,599 of them), creates
-- this session's staging table pg_temp.pgjobs_import_stage (emptied at
-- every commit) and returns the COPY ... FROM STDIN statement that fills
-- it with one batch: CSV records as they are in the source (PostgreSQL's
-- own CSV rules: an empty unquoted field is NULL, a quoted empty one the
-- empty string), JSONL records one per line. 55000 when p_worker does not hold the job. Locks nothing.
DECLARE
    v_job pgjobs.jobs;
    v_reg pgjobs.target_registry;
    v_csv boolean;
BEGIN
    SELECT j.* INTO v_job FROM pgjobs.jobs j WHERE j.id = p_id;
    IF NOT FOUND OR v_job.kind <> 'import' OR v_job.status <> 'running'
       OR v_job.worker IS DISTINCT FROM p_worker THEN
        PERFORM pgjobs._check_holder('job', p_id, p_worker);  -- 22023
        RAISE EXCEPTION 'job % is not an import running as %', p_id, p_worker
            USING ERRCODE = '55000', HINT = 'Claim the job first (pgjobs.claim).';
    END IF;
    v_reg := pgjobs._target(v_job.target);
    PERFORM pgjobs._require_submitter(v_job, v_reg);  -- 42501: a grant revoked since submit
    -- 22023: the scope column made generated (or an identity) since submit.
    PERFORM pgjobs._import_scope_writable(v_reg);
    v_csv := v_job.payload ->> 'format' = 'csv';
    -- The staging table holds one text column a field besides the record's
    -- number, within PostgreSQL's 1,600 columns of a table: a wider header
    -- failed there with 'tables can have at most 1600 columns', about a table
    -- the client never named (h150). Said of the source, for good.
    IF v_csv AND cardinality(p_fields) > 1599 THEN
        RAISE EXCEPTION 'the header row names % fields, more than the 1599 a CSV import reads',
                        cardinality(p_fields)
            USING ERRCODE = '54011',
            HINT = 'Import fewer fields a file (split the columns over several sources '
                   'sharing the key, the later ones with on_duplicate "update"), or give '
                   'the document''s fields as JSON Lines, whose records may name any number.';
    END IF;
    -- Rejects past the committed position belong to a batch that did not
    -- commit (one that failed the job on too many rejects keeps them for
    -- the rejects object): this attempt reads those records again.
    DELETE FROM pgjobs.import_rejects r
     WHERE r.job_id = p_id AND r.line > coalesce((v_job.checkpoint ->> 'line')::bigint, 0);
    IF v_csv THEN
        PERFORM pgjobs._import_insert_sql(v_job, v_reg, p_fields);
    END IF;
    DROP TABLE IF EXISTS pg_temp.pgjobs_import_stage;
    IF v_csv THEN
        EXECUTE format('CREATE TEMP TABLE pgjobs_import_stage (n bigint GENERATED ALWAYS AS '
                       'IDENTITY, %s) ON COMMIT DELETE ROWS',
                       (SELECT string_agg(format('%I text', 'f' || i), ', ' ORDER BY i)
                          FROM generate_series(1, cardinality(p_fields)) i));
        RETURN format('COPY pg_temp.pgjobs_import_stage (%s) FROM STDIN (FORMAT csv)',
                      (SELECT string_agg(format('%I', 'f' || i), ', ' ORDER BY i)
                         FROM generate_series(1, cardinality(p_fields)) i));
    END IF;
    CREATE TEMP TABLE pgjobs_import_stage (n bigint GENERATED ALWAYS AS IDENTITY, r text)
        ON COMMIT DELETE ROWS;
    -- Each line whole, as text: a valid JSON line holds no byte 1 or 2
    -- (control characters are escaped inside JSON strings).
    RETURN 'COPY pg_temp.pgjobs_import_stage (r) FROM STDIN '
           '(FORMAT csv, QUOTE E''\x01'', DELIMITER E''\x02'')';
END
$$;

COMMENT ON FUNCTION pgjobs.import_prepare(bigint, text, text[]) IS
'For the worker of import job p_id: checks the source''s fields, creates the session''s staging '
'table and returns the COPY FROM STDIN statement of one batch.';
