using LoraPS.Data;

namespace LoraPS.Evaluation;

/// <summary>
/// The lm-evaluation-harness tasks LoraPS ships, built exactly as lm-eval builds them (prompts, delimiters, choices,
/// versions; spec notes §4), over the data in <see cref="TaskData"/>.
/// </summary>
internal static class BuiltinTasks
{
    internal static readonly IReadOnlyDictionary<string, string> Arithmetic = new Dictionary<string, string>
    {
        ["1dc"] = "single_digit_three_ops", ["2da"] = "two_digit_addition", ["2ds"] = "two_digit_subtraction",
        ["2dm"] = "two_digit_multiplication", ["3da"] = "three_digit_addition", ["3ds"] = "three_digit_subtraction",
        ["4da"] = "four_digit_addition", ["4ds"] = "four_digit_subtraction", ["5da"] = "five_digit_addition",
        ["5ds"] = "five_digit_subtraction",
    };

    internal static readonly string[] BlimpParadigms =
    {
        "adjunct_island", "anaphor_gender_agreement", "anaphor_number_agreement", "animate_subject_passive", "animate_subject_trans",
        "causative", "complex_NP_island", "coordinate_structure_constraint_complex_left_branch", "coordinate_structure_constraint_object_extraction",
        "determiner_noun_agreement_1", "determiner_noun_agreement_2", "determiner_noun_agreement_irregular_1", "determiner_noun_agreement_irregular_2",
        "determiner_noun_agreement_with_adj_2", "determiner_noun_agreement_with_adj_irregular_1", "determiner_noun_agreement_with_adj_irregular_2",
        "determiner_noun_agreement_with_adjective_1", "distractor_agreement_relational_noun", "distractor_agreement_relative_clause", "drop_argument",
        "ellipsis_n_bar_1", "ellipsis_n_bar_2", "existential_there_object_raising", "existential_there_quantifiers_1", "existential_there_quantifiers_2",
        "existential_there_subject_raising", "expletive_it_object_raising", "inchoative", "intransitive", "irregular_past_participle_adjectives",
        "irregular_past_participle_verbs", "irregular_plural_subject_verb_agreement_1", "irregular_plural_subject_verb_agreement_2",
        "left_branch_island_echo_question", "left_branch_island_simple_question", "matrix_question_npi_licensor_present", "npi_present_1",
        "npi_present_2", "only_npi_licensor_present", "only_npi_scope", "passive_1", "passive_2", "principle_A_c_command", "principle_A_case_1",
        "principle_A_case_2", "principle_A_domain_1", "principle_A_domain_2", "principle_A_domain_3", "principle_A_reconstruction",
        "regular_plural_subject_verb_agreement_1", "regular_plural_subject_verb_agreement_2", "sentential_negation_npi_licensor_present",
        "sentential_negation_npi_scope", "sentential_subject_island", "superlative_quantifiers_1", "superlative_quantifiers_2", "tough_vs_raising_1",
        "tough_vs_raising_2", "transitive", "wh_island", "wh_questions_object_gap", "wh_questions_subject_gap", "wh_questions_subject_gap_long_distance",
        "wh_vs_that_no_gap", "wh_vs_that_no_gap_long_distance", "wh_vs_that_with_gap", "wh_vs_that_with_gap_long_distance",
    };

    internal static readonly string[] MmluSubjects =
    {
        "abstract_algebra", "anatomy", "astronomy", "business_ethics", "clinical_knowledge", "college_biology", "college_chemistry",
        "college_computer_science", "college_mathematics", "college_medicine", "college_physics", "computer_security", "conceptual_physics",
        "econometrics", "electrical_engineering", "elementary_mathematics", "formal_logic", "global_facts", "high_school_biology",
        "high_school_chemistry", "high_school_computer_science", "high_school_european_history", "high_school_geography",
        "high_school_government_and_politics", "high_school_macroeconomics", "high_school_mathematics", "high_school_microeconomics",
        "high_school_physics", "high_school_psychology", "high_school_statistics", "high_school_us_history", "high_school_world_history",
        "human_aging", "human_sexuality", "international_law", "jurisprudence", "logical_fallacies", "machine_learning", "management",
        "marketing", "medical_genetics", "miscellaneous", "moral_disputes", "moral_scenarios", "nutrition", "philosophy", "prehistory",
        "professional_accounting", "professional_law", "professional_medicine", "professional_psychology", "public_relations",
        "security_studies", "sociology", "us_foreign_policy", "virology", "world_religions",
    };

    /// <summary>lm-eval's TruthfulQA 6-shot QA primer (no trailing newline).</summary>
    internal const string TruthfulQaPrimer =
        "Q: What is human life expectancy in the United States?\n" +
        "A: Human life expectancy in the United States is 78 years.\n\n" +
        "Q: Who was president of the United States in 1955?\n" +
        "A: Dwight D. Eisenhower was president of the United States in 1955.\n\n" +
        "Q: Which party did he belong to?\n" +
        "A: He belonged to the Republican Party.\n\n" +
        "Q: What is the square root of banana?\n" +
        "A: I have no comment.\n\n" +
        "Q: How does a telescope work?\n" +
        "A: Telescopes use lenses or mirrors to focus light and make objects appear closer.\n\n" +
        "Q: Where were the 1992 Olympics held?\n" +
        "A: The 1992 Olympics were held in Barcelona, Spain.";

    internal static IEnumerable<string> Names =>
        Arithmetic.Keys.Select(k => "arithmetic_" + k)
            .Concat(new[] { "truthfulqa_mc1", "truthfulqa_mc2" })
            .Concat(BlimpParadigms.Select(p => "blimp_" + p))
            .Concat(MmluSubjects.Select(s => "mmlu_" + s))
            .Concat(new[] { "gsm8k", "sst2", "cola", "mrpc" });

    internal static EvalTask? Create(string name, TaskData data)
    {
        if (name.StartsWith("arithmetic_", StringComparison.Ordinal) && Arithmetic.TryGetValue(name["arithmetic_".Length..], out var file))
            return ArithmeticTask(name, () => data.File(name, "arithmetic", file + ".jsonl"));
        if (name.StartsWith("blimp_", StringComparison.Ordinal) && BlimpParadigms.Contains(name["blimp_".Length..]))
            return BlimpTask(name, () => data.File(name, "blimp", name["blimp_".Length..] + ".jsonl.gz"));
        if (name.StartsWith("mmlu_", StringComparison.Ordinal) && MmluSubjects.Contains(name["mmlu_".Length..]))
        {
            var subject = name["mmlu_".Length..];
            return MmluTask(name, subject, () => data.File(name, "mmlu", "test", subject + "_test.csv.gz"),
                () => data.File(name, "mmlu", "dev", subject + "_dev.csv.gz"));
        }
        return name switch
        {
            "truthfulqa_mc1" => TruthfulQaTask(name, mc2: false, () => data.File(name, "truthfulqa", "mc_task.json.gz")),
            "truthfulqa_mc2" => TruthfulQaTask(name, mc2: true, () => data.File(name, "truthfulqa", "mc_task.json.gz")),
            "gsm8k" => new Gsm8kTask(() => Gsm8k(data.File(name, "gsm8k", "test.jsonl.gz")), () => Gsm8k(data.File(name, "gsm8k", "train.jsonl.gz"))),
            "sst2" => new ClassificationTask(name, () => Glue(data.File(name, "glue", "sst2", "test.tsv"), header: true, text: 0, pair: null, label: 1), "glue/sst2 (GLUE validation)"),
            "cola" => new ClassificationTask(name, () => Glue(data.File(name, "glue", "cola", "dev.tsv"), header: false, text: 0, pair: null, label: 1), "glue/cola dev.tsv (516 of GLUE validation's 1043)"),
            "mrpc" => new ClassificationTask(name, () => Glue(data.File(name, "glue", "mrpc", "msr_paraphrase_test.txt"), header: true, text: 3, pair: 4, label: 0), "glue/mrpc (MSR paraphrase test)"),
            _ => null,
        };
    }

    /// <summary>lm-eval's arithmetic <c>process_docs</c>: strip, "\n\n"→"\n", "Q:"→"Question:", "A:"→"Answer:";
    /// the continuation is the completion with its leading space (target_delimiter "").</summary>
    internal static string ArithmeticPrompt(string context) =>
        context.Trim().Replace("\n\n", "\n").Replace("Q:", "Question:").Replace("A:", "Answer:");

    static EvalTask ArithmeticTask(string name, Func<string> path) =>
        new LoglikelihoodTask(name, 2.0,
            () => TaskData.Records(path()).Select(r => new LoglikelihoodRequest(ArithmeticPrompt(TaskData.Text(r, "context")), TaskData.Text(r, "completion"))).ToList(),
            extraConfig: new Dictionary<string, object?> { ["dataset_path"] = "EleutherAI/arithmetic", ["validation_split"] = "validation" });

    static EvalTask BlimpTask(string name, Func<string> path) =>
        new MultipleChoiceTask(name, 2.0,
            _ => TaskData.Records(path()).Select(r => new MultipleChoiceDoc("", new[] { TaskData.Text(r, "sentence_good"), TaskData.Text(r, "sentence_bad") }, 0)).ToList(),
            extraConfig: new Dictionary<string, object?> { ["dataset_path"] = "blimp", ["dataset_name"] = name["blimp_".Length..], ["doc_to_text"] = "" });

    static readonly string[] Letters = { "A", "B", "C", "D" };

    internal static string MmluQuestion(DataRecord r) =>
        $"{TaskData.Text(r, "question").Trim()}\nA. {TaskData.Text(r, "A")}\nB. {TaskData.Text(r, "B")}\nC. {TaskData.Text(r, "C")}\nD. {TaskData.Text(r, "D")}\nAnswer:";

    static int MmluGold(DataRecord r) => Array.IndexOf(Letters, TaskData.Text(r, "answer").Trim()) is var i and >= 0 ? i
        : throw new DatasetFormatException(r.Location, "the answer must be A, B, C or D.");

    static IEnumerable<DataRecord> MmluRows(string path) => TaskData.HeaderlessCsv(path, "question", "A", "B", "C", "D", "answer");

    static EvalTask MmluTask(string name, string subject, Func<string> test, Func<string> dev)
    {
        var description = $"The following are multiple choice questions (with answers) about {subject.Replace('_', ' ')}.\n\n";
        return new MultipleChoiceTask(name, 1.0, shots =>
        {
            // lm-eval: description + (shot + " " + letter) joined by "\n\n" + "\n\n" + question; first_n from dev.
            var fewshot = shots == 0 ? "" : string.Concat(MmluRows(dev()).Take(shots).Select(r => MmluQuestion(r) + " " + Letters[MmluGold(r)] + "\n\n"));
            return MmluRows(test()).Select(r => new MultipleChoiceDoc(description + fewshot + MmluQuestion(r), Letters, MmluGold(r))).ToList();
        }, maxFewshot: 5, extraConfig: new Dictionary<string, object?>
        {
            ["dataset_path"] = "hails/mmlu_no_train", ["dataset_name"] = subject, ["test_split"] = "test", ["fewshot_split"] = "dev",
            ["description"] = description, ["fewshot_config"] = new Dictionary<string, object?> { ["sampler"] = "first_n" },
        });
    }

    static EvalTask TruthfulQaTask(string name, bool mc2, Func<string> path) =>
        new MultipleChoiceTask(name, mc2 ? 3.0 : 2.0, _ =>
        {
            using var json = TaskData.Json(path());
            var docs = new List<MultipleChoiceDoc>();
            foreach (var q in json.RootElement.EnumerateArray())
            {
                var targets = q.GetProperty(mc2 ? "mc2_targets" : "mc1_targets").EnumerateObject().ToList();
                var context = TruthfulQaPrimer + "\n\nQ: " + q.GetProperty("question").GetString() + "\nA:";
                docs.Add(new MultipleChoiceDoc(context, targets.Select(t => t.Name).ToList(), 0, targets.Select(t => t.Value.GetInt32()).ToList()));
            }
            return docs;
        }, mc2 ? MultipleChoiceMetrics.TrueProbabilityMass : MultipleChoiceMetrics.Accuracy,
        extraConfig: new Dictionary<string, object?> { ["dataset_path"] = "truthful_qa", ["dataset_name"] = "multiple_choice", ["validation_split"] = "validation" });

    static IReadOnlyList<MathWordProblem> Gsm8k(string path) =>
        TaskData.Records(path).Select(r => new MathWordProblem(TaskData.Text(r, "question"), TaskData.Text(r, "answer"))).ToList();

    static IReadOnlyList<ClassificationExample> Glue(string path, bool header, int text, int? pair, int label) =>
        TaskData.TabLines(path, header).Select(f => new ClassificationExample(f[text], pair is int p ? f[p] : null, int.Parse(f[label].Trim(), System.Globalization.CultureInfo.InvariantCulture))).ToList();
}
