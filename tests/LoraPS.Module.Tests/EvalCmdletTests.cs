using System.Text.Json;
using LoraPS.Evaluation;
using Xunit;

namespace LoraPS.Module.Tests;

/// <summary>Invoke-LoraEval through a real runspace on stories260K, with small -Limit.</summary>
[Collection(ModuleCollection.Name)]
public class EvalCmdletTests(RunspaceFixture fixture)
{
    [Fact]
    public void ScoresTasksAndWritesLmEvalJson()
    {
        var file = Path.Combine(Path.GetTempPath(), $"loraps-eval-{Guid.NewGuid():N}.json");
        try
        {
            var (output, errors) = fixture.Invoke(
                $"$em = Import-LoraModel; 'blimp_causative', 'arithmetic_2da' | Invoke-LoraEval -Model $em -Limit 4 -OutFile '{file}'; Remove-LoraModel $em");
            Assert.Empty(errors);
            var results = output.Select(o => Assert.IsType<EvalResult>(o.BaseObject)).ToList();
            Assert.Equal(new[] { "blimp_causative", "arithmetic_2da" }, results.Select(r => r.Task));
            Assert.All(results, r => { Assert.Equal("acc", r.Metric); Assert.Equal(4, r.N); Assert.Equal("stories260K", r.Model); Assert.Equal(EvalResult.BaseAdapter, r.Adapter); });

            using var json = JsonDocument.Parse(File.ReadAllText(file));
            var blimp = json.RootElement.GetProperty("results").GetProperty("blimp_causative");
            Assert.Equal(results[0].Value, blimp.GetProperty("acc,none").GetDouble(), 12);
            Assert.Equal(results[0].Stderr ?? double.NaN, blimp.GetProperty("acc_stderr,none").GetDouble(), 12);
            Assert.Equal(2.0, json.RootElement.GetProperty("versions").GetProperty("arithmetic_2da").GetDouble());
            Assert.Equal(0, json.RootElement.GetProperty("n-shot").GetProperty("blimp_causative").GetInt32());
            Assert.Equal(1000, json.RootElement.GetProperty("n-samples").GetProperty("blimp_causative").GetProperty("original").GetInt32());
            Assert.Equal("multiple_choice", json.RootElement.GetProperty("configs").GetProperty("blimp_causative").GetProperty("output_type").GetString());

            var (_, again) = fixture.Invoke($"$em = Import-LoraModel; Invoke-LoraEval $em blimp_causative -Limit 1 -OutFile '{file}'; Remove-LoraModel $em");
            Assert.StartsWith("ResultsFileExists,", Assert.Single(again).FullyQualifiedErrorId);
        }
        finally { File.Delete(file); }
    }

    [Fact]
    public void BaseAndAdapterInOnePipeline()   // PiSSA moves the principal part of W into the adapter, so the two differ
    {
        var text = Path.Combine(Path.GetTempPath(), $"loraps-eval-{Guid.NewGuid():N}.txt");
        File.WriteAllText(text, "Once upon a time, there was a little girl named Lily. She loved to play outside.");
        try
        {
            var (output, errors) = fixture.Invoke(
                "$ea = Import-LoraModel; New-LoraConfig -Rank 4 -Init PiSSA | Add-LoraAdapter -Model $ea -Name noisy -Seed 3 | Out-Null; " +
                $"Invoke-LoraEval $ea -TaskFile '{text}' -Adapter noisy -IncludeBase; $ea.Adapters.ActiveAdapters; Remove-LoraModel $ea");
            Assert.Empty(errors);
            var results = output.Where(o => o.BaseObject is EvalResult).Select(o => (EvalResult)o.BaseObject).ToList();
            var baseline = results.Single(r => r.Adapter == EvalResult.BaseAdapter && r.Metric == "word_perplexity");
            var adapted = results.Single(r => r.Adapter == "noisy" && r.Metric == "word_perplexity");
            Assert.NotEqual(baseline.Value, adapted.Value);
            Assert.Equal("noisy", output.Last().BaseObject);   // the adapter state is restored
        }
        finally { File.Delete(text); }
    }

    [Fact]
    public void BadInputsHaveTheirOwnErrorIds()
    {
        var (_, unknown) = fixture.Invoke("$eb = Import-LoraModel; Invoke-LoraEval $eb -Task mmlu_global_fact");
        var error = Assert.Single(unknown);
        Assert.StartsWith("UnknownTask,", error.FullyQualifiedErrorId);
        Assert.Contains("mmlu_global_facts", error.Exception.Message);

        var (_, adapter) = fixture.Invoke("Invoke-LoraEval $eb -Task blimp_causative -Adapter nope");
        Assert.StartsWith("AdapterNotFound,", Assert.Single(adapter).FullyQualifiedErrorId);

        var (_, head) = fixture.Invoke("Invoke-LoraEval $eb -Task sst2; Remove-LoraModel $eb");
        Assert.StartsWith("ModelHeadMismatch,", Assert.Single(head).FullyQualifiedErrorId);

        var empty = Directory.CreateTempSubdirectory("loraps-eval-").FullName;
        try
        {
            var (_, data) = fixture.Invoke($"$ec = Import-LoraModel; Invoke-LoraEval $ec -Task blimp_causative -DataRoot '{empty}'; Remove-LoraModel $ec");
            Assert.StartsWith("TaskDataNotFound,", Assert.Single(data).FullyQualifiedErrorId);
        }
        finally { Directory.Delete(empty, true); }
    }

    [Fact]
    public void ListTaskFiltersNames()
    {
        var (output, errors) = fixture.Invoke("Invoke-LoraEval -ListTask 'arithmetic_5*'");
        Assert.Empty(errors);
        Assert.Equal(new[] { "arithmetic_5da", "arithmetic_5ds" }, output.Select(o => o.BaseObject));
    }
}
