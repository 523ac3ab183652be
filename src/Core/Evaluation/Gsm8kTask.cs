using System.Text.RegularExpressions;

namespace LoraPS.Evaluation;

/// <summary>A grade-school math problem and its worked answer ending in <c>#### 42</c>.</summary>
public sealed record MathWordProblem(string Question, string Answer);

/// <summary>
/// lm-eval's <c>gsm8k</c> (version 3): greedy generation of <c>"Question: …\nAnswer:"</c> until "Question:", "&lt;/s&gt;"
/// or "&lt;|im_end|&gt;", 5-shot by default, scored by exact match of the final number under two filters:
/// <c>strict-match</c> (the number after "#### ") and <c>flexible-extract</c> (the last number in the answer).
/// Few-shot examples are the first N of the train split (lm-eval draws them at random with seed 1234).
/// </summary>
public sealed class Gsm8kTask : EvalTask
{
    static readonly string[] Until = { "Question:", "</s>", "<|im_end|>" };
    static readonly Regex Strict = new(@"#### (\-?[0-9\.\,]+)", RegexOptions.CultureInvariant);
    static readonly Regex Flexible = new(@"(-?[$0-9.,]{2,})|(-?[0-9]+)", RegexOptions.CultureInvariant);
    static readonly Regex[] Ignore = { new(","), new(@"\$"), new(@"(?s).*#### "), new(@"\.$") };
    const string Invalid = "[invalid]";

    readonly Func<IReadOnlyList<MathWordProblem>> test;
    readonly Func<IReadOnlyList<MathWordProblem>> train;

    public Gsm8kTask(Func<IReadOnlyList<MathWordProblem>> test, Func<IReadOnlyList<MathWordProblem>> train, string name = "gsm8k") : base(name)
    {
        this.test = test;
        this.train = train;
    }

    public override double Version => 3.0;
    public override string OutputType => "generate_until";
    public override int DefaultFewshot => 5;
    public override int MaxFewshot => 100;

    /// <summary>Tokens to generate at most per problem (lm-eval's <c>max_gen_toks</c> default).</summary>
    public int MaxGenTokens { get; init; } = 256;

    static string Prompt(MathWordProblem p) => $"Question: {p.Question}\nAnswer:";

    /// <summary>The few-shot context followed by the problem's own prompt.</summary>
    public static string Context(MathWordProblem problem, IReadOnlyList<MathWordProblem> shots) =>
        string.Concat(shots.Select(s => Prompt(s) + " " + s.Answer + "\n\n")) + Prompt(problem);

    /// <summary>lm-eval's <c>RegexFilter</c> + <c>take_first</c>: the first match (strict) or the last (flexible,
    /// group_select −1); of a multi-group match the first non-empty group; stripped; "[invalid]" if none.</summary>
    public static string Extract(string response, bool strict)
    {
        var regex = strict ? Strict : Flexible;
        var matches = regex.Matches(response);
        if (matches.Count == 0) return Invalid;
        var match = strict ? matches[0] : matches[^1];
        var groups = Enumerable.Range(1, match.Groups.Count - 1).Select(g => match.Groups[g].Value).Where(v => v.Length > 0).ToList();
        return groups.Count == 0 ? Invalid : groups[0].Trim();
    }

    /// <summary>lm-eval's <c>exact_match</c> with gsm8k's <c>regexes_to_ignore</c> and <c>ignore_case</c>.</summary>
    public static bool ExactMatch(string prediction, string reference) => Normalize(prediction) == Normalize(reference);

    static string Normalize(string text)
    {
        foreach (var r in Ignore) text = r.Replace(text, "");
        return text.ToLowerInvariant();
    }

    protected override TaskResult Run(EvalContext context, int numFewshot)
    {
        var scorer = context.RequireScorer(this);
        var all = test();
        var docs = context.Limited(all);
        var shots = numFewshot > 0 ? train().Take(numFewshot).ToList() : new List<MathWordProblem>();
        int truncatedBefore = scorer.TruncatedRequests;
        var requests = docs.Select(d => new GenerateUntilRequest(Context(d, shots), Until, MaxGenTokens)).ToList();
        var responses = scorer.GenerateUntil(requests, context.CancellationToken);
        var strict = responses.Select((r, i) => ExactMatch(Extract(r, strict: true), docs[i].Answer) ? 1.0 : 0.0).ToList();
        var flexible = responses.Select((r, i) => ExactMatch(Extract(r, strict: false), docs[i].Answer) ? 1.0 : 0.0).ToList();
        var metrics = new List<EvalMetric>
        {
            new("exact_match", Metrics.Mean(strict), Metrics.MeanStderr(strict), Filter: "strict-match"),
            new("exact_match", Metrics.Mean(flexible), Metrics.MeanStderr(flexible), Filter: "flexible-extract"),
        };
        var config = BaseConfig(numFewshot, new[] { "exact_match" }, "gsm8k");
        config["dataset_name"] = "main";
        config["doc_to_text"] = "Question: {{question}}\nAnswer:";
        config["doc_to_target"] = "{{answer}}";
        config["target_delimiter"] = " ";
        config["fewshot_delimiter"] = "\n\n";
        config["fewshot_config"] = new Dictionary<string, object?> { ["sampler"] = "first_n", ["split"] = "train" };
        config["generation_kwargs"] = new Dictionary<string, object?> { ["until"] = Until, ["do_sample"] = false, ["temperature"] = 0.0, ["max_gen_toks"] = MaxGenTokens };
        return new TaskResult
        {
            Task = Name, Version = Version, OutputType = OutputType, NumFewshot = numFewshot, N = responses.Count, NOriginal = all.Count,
            Truncated = scorer.TruncatedRequests - truncatedBefore, Complete = responses.Count == docs.Count, Metrics = metrics, Config = config,
        };
    }
}
