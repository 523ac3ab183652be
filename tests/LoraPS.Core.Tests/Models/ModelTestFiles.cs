using LoraPS.Checkpoints;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace LoraPS.Tests.Models;

/// <summary>Paths of the bundled models and fixtures, and comparison helpers for the model tests.</summary>
internal static class ModelTestFiles
{
    public static string RepoRoot { get; } = FindRepoRoot();

    public static string Fixture(string model) => Path.Combine(RepoRoot, "tests", "fixtures", "models", model);

    public static string Stories260K => Path.Combine(RepoRoot, "models", "stories260K");

    /// <summary>Every tensor of a fixture's reference.safetensors, registered in the caller's dispose scope.</summary>
    public static Dictionary<string, Tensor> Reference(string model)
    {
        using var file = SafetensorsFile.Open(Path.Combine(Fixture(model), "reference.safetensors"));
        return file.Entries.ToDictionary(e => e.Name, e => file.ReadTensor(e.Name));
    }

    /// <summary>Asserts |expected − actual| ≤ atol + rtol·|expected| everywhere, reporting the worst element.</summary>
    public static void AssertClose(Tensor expected, Tensor actual, double atol, double rtol = 0, string what = "")
    {
        using var scope = NewDisposeScope();
        Assert.Equal(expected.shape, actual.shape);
        var e = expected.to(ScalarType.Float64);
        var a = actual.to(ScalarType.Float64).cpu();
        var excess = (e - a).abs() - (e.abs() * rtol + atol);
        var worst = excess.max().item<double>();
        var maxDiff = (e - a).abs().max().item<double>();
        Assert.True(worst <= 0, $"{what}: max |diff| = {maxDiff:G3} exceeds atol {atol:G3} + rtol {rtol:G3}·|x|");
    }

    public static double MaxAbsDiff(Tensor x, Tensor y)
    {
        using var scope = NewDisposeScope();
        return (x.to(ScalarType.Float64).cpu() - y.to(ScalarType.Float64).cpu()).abs().max().item<double>();
    }

    private static string FindRepoRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "LoraPS.sln"))) return dir.FullName;
        throw new InvalidOperationException("LoraPS.sln not found above " + AppContext.BaseDirectory);
    }
}
