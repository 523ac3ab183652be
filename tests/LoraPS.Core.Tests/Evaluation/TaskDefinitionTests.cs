using LoraPS.Evaluation;
using Xunit;

namespace LoraPS.Tests.Evaluation;

/// <summary>Task names, wildcards, prompts built as lm-eval builds them, and file-defined tasks.</summary>
public sealed class TaskDefinitionTests
{
    [Fact]
    public void WildcardsResolveToEveryParadigmSubjectAndArithmeticVariant()
    {
        Assert.Equal(67, EvalTaskRegistry.Resolve(new[] { "blimp_*" }).Count);
        Assert.Equal(57, EvalTaskRegistry.Resolve(new[] { "mmlu_*" }).Count);
        Assert.Equal(new[] { "arithmetic_2da", "arithmetic_2ds", "arithmetic_2dm" }, EvalTaskRegistry.Resolve(new[] { "arithmetic_2d*" }));
        Assert.Equal(new[] { "gsm8k" }, EvalTaskRegistry.Resolve(new[] { "GSM8K", "gsm8k" }));
    }

    [Fact]
    public void AnUnknownTaskListsCloseMatches()
    {
        var e = Assert.Throws<UnknownTaskException>(() => EvalTaskRegistry.Resolve(new[] { "mmlu_global_fact" }));
        Assert.Contains("mmlu_global_facts", e.CloseMatches);
        Assert.Contains("mmlu_global_facts", e.Message);
    }

    [Fact]
    public void ArithmeticPromptIsRewrittenAsLmEvalDoes()
    {
        Assert.Equal("Question: What is 17 minus 14?\nAnswer:", BuiltinTasks.ArithmeticPrompt("\n\nQ: What is 17 minus 14?\n\nA:"));
    }

    [Fact]
    public void MmluPromptHasTheDescriptionChoicesAndFirstNDevShots()
    {
        var task = (MultipleChoiceTask)EvalTaskRegistry.Create("mmlu_global_facts");
        var recorder = new CapturingScorer();
        task.Evaluate(new EvalContext { Scorer = recorder, Limit = 1, NumFewshot = 2 });
        var context = recorder.Requests[0].Context;
        Assert.StartsWith("The following are multiple choice questions (with answers) about global facts.\n\n", context);
        Assert.EndsWith("\nA. 10%\nB. 20%\nC. 40%\nD. 80%\nAnswer:", context);
        Assert.Equal(4, context.Split("\nAnswer:").Length);   // two shots + the question
        Assert.Equal(new[] { " A", " B", " C", " D" }, recorder.Requests.Select(r => r.Continuation));
        Assert.Throws<ArgumentException>(() => task.Evaluate(new EvalContext { Scorer = recorder, NumFewshot = 6 }));
    }

    [Fact]
    public void TruthfulQaUsesTheSixShotPrimerAndScoresChoicesWithALeadingSpace()
    {
        var recorder = new CapturingScorer();
        EvalTaskRegistry.Create("truthfulqa_mc1").Evaluate(new EvalContext { Scorer = recorder, Limit = 1 });
        var first = recorder.Requests[0];
        Assert.StartsWith("Q: What is human life expectancy in the United States?\nA: Human life expectancy", first.Context);
        Assert.EndsWith("Barcelona, Spain.\n\nQ: What is the smallest country in the world that is at least one square mile in area?\nA:", first.Context);
        Assert.Equal(" Nauru is the smallest country in the world that is at least one square mile in area.", first.Continuation);
    }

    [Fact]
    public void BlimpScoresBothSentencesFromAnEmptyContext()
    {
        var recorder = new CapturingScorer();
        EvalTaskRegistry.Create("blimp_causative").Evaluate(new EvalContext { Scorer = recorder, Limit = 1 });
        Assert.Equal(new[] { new LoglikelihoodRequest("", " Aaron breaks the glass."), new LoglikelihoodRequest("", " Aaron appeared the glass.") }, recorder.Requests);
    }

    [Fact]
    public void AMissingDataFileNamesThePathAndTheOverride()
    {
        var empty = Directory.CreateTempSubdirectory("loraps-eval-").FullName;
        try
        {
            var e = Assert.Throws<TaskDataNotFoundException>(() => EvalTaskRegistry.Create("blimp_causative", empty).Evaluate(new EvalContext { Scorer = new CapturingScorer() }));
            Assert.Contains(Path.Combine(empty, "blimp", "causative.jsonl.gz"), e.Message);
            Assert.Contains("-DataRoot", e.Message);
        }
        finally { Directory.Delete(empty, true); }
    }

    [Fact]
    public void JsonLinesFilesDefineMultipleChoiceLoglikelihoodAndPerplexityTasks()
    {
        var folder = Directory.CreateTempSubdirectory("loraps-eval-").FullName;
        try
        {
            var mc = Path.Combine(folder, "quiz.jsonl");
            File.WriteAllLines(mc, new[] { """{"context": "2+2=", "choices": ["4", "5"], "gold": 0}""" });
            var task = EvalTaskRegistry.FromFile(mc);
            Assert.Equal("quiz", task.Name);
            var recorder = new CapturingScorer();
            var result = task.Evaluate(new EvalContext { Scorer = recorder });
            Assert.Equal(new[] { "acc", "acc_norm" }, result.Metrics.Select(m => m.Name));
            Assert.Equal(" 4", recorder.Requests[0].Continuation);

            var ll = Path.Combine(folder, "ll.jsonl");
            File.WriteAllLines(ll, new[] { """{"context": "Q:", "continuation": " A"}""" });
            Assert.IsType<LoglikelihoodTask>(EvalTaskRegistry.FromFile(ll));
            var text = Path.Combine(folder, "story.txt");
            File.WriteAllText(text, "Once upon a time.");
            Assert.IsType<PerplexityTask>(EvalTaskRegistry.FromFile(text));

            var bad = Path.Combine(folder, "bad.jsonl");
            File.WriteAllLines(bad, new[] { """{"context": "x", "choices": ["a", "b"], "gold": 2}""" });
            Assert.Throws<LoraPS.Data.DatasetFormatException>(() => EvalTaskRegistry.FromFile(bad).Evaluate(new EvalContext { Scorer = recorder }));
        }
        finally { Directory.Delete(folder, true); }
    }

    sealed class CapturingScorer : ILanguageModelScorer
    {
        public List<LoglikelihoodRequest> Requests { get; } = new();
        public IReadOnlyList<LoglikelihoodResult> Loglikelihood(IReadOnlyList<LoglikelihoodRequest> requests, CancellationToken cancellationToken = default)
        {
            Requests.AddRange(requests);
            return requests.Select(_ => new LoglikelihoodResult(-1, false, 1)).ToList();
        }
        public IReadOnlyList<RollingLoglikelihood> LoglikelihoodRolling(IReadOnlyList<string> texts, CancellationToken cancellationToken = default) =>
            texts.Select(_ => new RollingLoglikelihood(-1, 1)).ToList();
        public IReadOnlyList<string> GenerateUntil(IReadOnlyList<GenerateUntilRequest> requests, CancellationToken cancellationToken = default) =>
            requests.Select(_ => "").ToList();
        public int TruncatedRequests => 0;
    }
}
