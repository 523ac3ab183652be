using LoraPS.Generation;
using LoraPS.Models;
using Xunit;

namespace LoraPS.Module.Tests;

/// <summary>Import-LoraModel, Invoke-LoraGenerate and Remove-LoraModel through a real runspace.</summary>
[Collection(ModuleCollection.Name)]
public class ModelCmdletTests(RunspaceFixture fixture)
{
    static string Repo => ModuleAssemblies.RepoRoot;

    [Fact]
    public void ImportWithoutPathLoadsTheBundledModelFromTheModuleFolder()
    {
        var (output, errors) = fixture.Invoke("$m = Import-LoraModel; $m; $m.Path; Remove-LoraModel $m");
        Assert.Empty(errors);
        var model = Assert.IsType<LoraModel>(output[0].BaseObject);
        Assert.Equal("stories260K", model.Name);
        Assert.Equal("llama", model.Architecture);
        Assert.Equal(260_032, model.Parameters);
        Assert.Equal(Precision.FP32, model.Precision);
        Assert.StartsWith(ModuleAssemblies.ModuleFolder, output[1].ToString());
        Assert.True(model.IsDisposed);
    }

    [Fact]
    public void ImportTakesFoldersFromThePipelineAndAPrecision()
    {
        var (output, errors) = fixture.Invoke(
            $"[System.IO.DirectoryInfo]::new('{Path.Combine(Repo, "models", "stories260K")}') | Import-LoraModel -Precision BF16 | ForEach-Object {{ $_.Precision; $_.MemoryBytes; Remove-LoraModel $_ }}");
        Assert.Empty(errors);
        Assert.Equal(Precision.BF16, output[0].BaseObject);
        Assert.Equal(260_032L * 2, (long)output[1].BaseObject);
    }

    [Fact]
    public void ImportOfAFolderWithoutATokenizerSaysWhatIsMissing()
    {
        var folder = Path.Combine(Repo, "tests", "fixtures", "models", "tiny-llama");
        var (_, errors) = fixture.Invoke($"Import-LoraModel -LiteralPath '{folder}'");
        var error = Assert.Single(errors);
        Assert.StartsWith("FileNotFound,", error.FullyQualifiedErrorId);
        Assert.Contains("tokenizer", error.Exception.Message);
    }

    [Fact]
    public void ImportOfAMissingFolderIsObjectNotFound()
    {
        var (_, errors) = fixture.Invoke("Import-LoraModel -Path ./no/such/model");
        Assert.StartsWith("PathNotFound,", Assert.Single(errors).FullyQualifiedErrorId);
    }

    [Fact]
    public void GenerateTakesPromptsFromThePipelineAndReproducesTheDocumentedSample()
    {
        var (output, errors) = fixture.Invoke(
            "$m = Import-LoraModel; '', 'Lily and Tom' | Invoke-LoraGenerate -Model $m -MaxNewTokens 20; Remove-LoraModel $m");
        Assert.Empty(errors);
        Assert.Equal(2, output.Count);
        var first = Assert.IsType<GenerationResult>(output[0].BaseObject);
        Assert.StartsWith("Once upon a time, there was a little girl named Lily.", first.Completion);
        var second = Assert.IsType<GenerationResult>(output[1].BaseObject);
        Assert.StartsWith("Lily and Tom", second.Text);
        Assert.Equal(20, second.GeneratedTokens);
    }

    [Fact]
    public void GenerateWithASeedIsReproducible()
    {
        var (output, errors) = fixture.Invoke(
            "$m = Import-LoraModel; 1..2 | ForEach-Object { (Invoke-LoraGenerate $m 'Once' -MaxNewTokens 15 -Temperature 1 -Seed 5).Completion }; Remove-LoraModel $m");
        Assert.Empty(errors);
        Assert.Equal(output[0].ToString(), output[1].ToString());
    }

    [Fact]
    public void GenerateRejectsBadSamplingValuesAtBinding()
    {
        var (_, errors) = fixture.Invoke("$m = Import-LoraModel; try { Invoke-LoraGenerate $m 'x' -TopP 2 } finally { Remove-LoraModel $m }");
        Assert.Contains(errors, e => e.FullyQualifiedErrorId.StartsWith("ParameterArgumentValidationError"));
    }

    [Fact]
    public void UsingARemovedModelIsAnInvalidOperation()
    {
        var (_, errors) = fixture.Invoke("$m = Import-LoraModel; Remove-LoraModel $m; Invoke-LoraGenerate $m 'x'");
        var error = Assert.Single(errors);
        Assert.StartsWith("InvalidOperation,", error.FullyQualifiedErrorId);
        Assert.Contains("Import-LoraModel", error.Exception.Message);
    }

    [Fact]
    public void RemoveSupportsWhatIf()
    {
        var (output, errors) = fixture.Invoke("$m = Import-LoraModel; Remove-LoraModel $m -WhatIf; $m.IsDisposed; Remove-LoraModel $m");
        Assert.Empty(errors);
        Assert.False((bool)Assert.Single(output).BaseObject);
    }
}
