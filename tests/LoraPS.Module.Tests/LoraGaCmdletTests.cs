using System.Management.Automation;
using System.Text.Json.Nodes;
using LoraPS.Training;
using Xunit;

namespace LoraPS.Module.Tests;

/// <summary>Initialize-LoraGA and Save-LoraAdapter -NoConversion through a real runspace, on the bundled stories260K.</summary>
[Collection(ModuleCollection.Name)]
public sealed class LoraGaCmdletTests(RunspaceFixture fixture) : IDisposable
{
    readonly string _temp = Directory.CreateTempSubdirectory("loraps-loraga-cmdlets-").FullName;

    static string Addition => Path.Combine(ModuleAssemblies.RepoRoot, "data", "arithmetic", "two_digit_addition.jsonl");

    public void Dispose()
    {
        fixture.Invoke("if ($gaModel -is [LoraPS.Models.LoraModel]) { Remove-LoraModel $gaModel }; $gaModel = $null; $gaData = $null");
        Directory.Delete(_temp, recursive: true);
    }

    IReadOnlyList<PSObject> RunClean(string script)
    {
        var (output, errors) = fixture.Invoke(script);
        Assert.True(errors.Count == 0, string.Join("\n", errors.Select(e => $"{e.FullyQualifiedErrorId}: {e.Exception.Message}")));
        return output;
    }

    [Fact]
    public void InitializesSavesConvertedAndUnconvertedAndReusesTheCache()
    {
        string cache = Path.Combine(_temp, "grads.safetensors");
        RunClean($"$gaModel = Import-LoraModel; $gaData = Import-LoraDataset -LiteralPath '{Addition}'");
        var result = Assert.IsType<LoraGaResult>(RunClean(
            $"Initialize-LoraGA -Model $gaModel -Config (New-LoraConfig -Rank 2 -Alpha 4 -UseRsLora -TargetModules q_proj, v_proj) -Dataset $gaData -Batches 3 -GradientCachePath '{cache}'").Single().BaseObject);
        Assert.Equal(("default", 10, 3, false), (result.AdapterName, result.Layers, result.Batches, result.UsedCachedGradients));
        Assert.True(File.Exists(cache));
        Assert.True(result.PeakMemoryBytes > 0);

        RunClean($"Save-LoraAdapter -Model $gaModel -Path '{Path.Combine(_temp, "converted")}'; Save-LoraAdapter -Model $gaModel -Path '{Path.Combine(_temp, "raw")}' -NoConversion");
        var converted = JsonNode.Parse(File.ReadAllText(Path.Combine(_temp, "converted", "adapter_config.json")))!;
        var raw = JsonNode.Parse(File.ReadAllText(Path.Combine(_temp, "raw", "adapter_config.json")))!;
        Assert.Equal((4, 2), (converted["r"]!.GetValue<int>(), raw["r"]!.GetValue<int>()));
        Assert.Equal("lora_ga", raw["init_lora_weights"]!.GetValue<string>());

        // The cache is reused without data: no batches run, same layers.
        var again = Assert.IsType<LoraGaResult>(RunClean(
            $"Initialize-LoraGA -Model $gaModel -Config (New-LoraConfig -Rank 2 -Alpha 4 -UseRsLora -TargetModules q_proj, v_proj) -Name second -GradientCachePath '{cache}' -Direction A2rBr").Single().BaseObject);
        Assert.True(again.UsedCachedGradients);
        Assert.Equal(TimeSpan.Zero, again.GradientTime);

        // Piped data works too, and each adapter is independent.
        var third = Assert.IsType<LoraGaResult>(RunClean("$gaData | Initialize-LoraGA -Model $gaModel -Config (New-LoraConfig -Rank 2 -TargetModules q_proj) -Batches 2 -Name third").Single().BaseObject);
        Assert.Equal((5, 2), (third.Layers, third.Batches));
        Assert.Equal(3, RunClean("Get-LoraAdapter -Model $gaModel").Count);
    }

    [Fact]
    public void WithoutDataOrCacheItIsAnInvalidArgument()
    {
        RunClean("$gaModel = Import-LoraModel");
        var (_, errors) = fixture.Invoke("Initialize-LoraGA -Model $gaModel -Config (New-LoraConfig -Rank 2)");
        var error = Assert.Single(errors);
        Assert.StartsWith("InvalidArgument,", error.FullyQualifiedErrorId);
        Assert.Contains("-Dataset", error.Exception.Message);
        Assert.Empty(RunClean("Get-LoraAdapter -Model $gaModel"));
    }

    [Fact]
    public void WhatIfChangesNothing()
    {
        RunClean($"$gaModel = Import-LoraModel; $gaData = Import-LoraDataset -LiteralPath '{Addition}'");
        RunClean("Initialize-LoraGA -Model $gaModel -Config (New-LoraConfig -Rank 2) -Dataset $gaData -Batches 1 -WhatIf");
        Assert.Empty(RunClean("Get-LoraAdapter -Model $gaModel"));
    }
}
