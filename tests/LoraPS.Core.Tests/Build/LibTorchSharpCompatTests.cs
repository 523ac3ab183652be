using LoraPS.Build;
using Xunit;

namespace LoraPS.Tests.Build;

/// <summary>The build-time repair of TorchSharp's native wrapper, exercised on the real library as shipped.</summary>
public sealed class LibTorchSharpCompatTests : IDisposable
{
    readonly string dir = Directory.CreateTempSubdirectory("loraps-compat-").FullName;
    readonly string lib;

    public LibTorchSharpCompatTests()
    {
        lib = Path.Combine(dir, "libLibTorchSharp.so");
        File.Copy(ShippedLibrary(), lib);
    }

    public void Dispose() => Directory.Delete(dir, recursive: true);

    static string ShippedLibrary()
    {
        var packages = Environment.GetEnvironmentVariable("NUGET_PACKAGES")
                       ?? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");
        var path = Path.Combine(packages, "torchsharp", "0.107.0", "runtimes", "linux-x64", "native", "libLibTorchSharp.so");
        Assert.True(File.Exists(path), $"expected the restored TorchSharp package at {path}");
        return path;
    }

    /// <summary>The versions Debian 12's libstdc++ defines: everything up to GLIBCXX_3.4.30.</summary>
    static HashSet<string> Debian12() =>
        Enumerable.Range(0, 31).Select(i => i == 0 ? "GLIBCXX_3.4" : $"GLIBCXX_3.4.{i}")
            .Concat(Enumerable.Range(0, 14).Select(i => i == 0 ? "CXXABI_1.3" : $"CXXABI_1.3.{i}")).ToHashSet();

    [Fact]
    public void RepairsOnlyTheMissingVersionAndIsIdempotent()
    {
        var original = File.ReadAllBytes(lib);
        var first = LibStdCxxCompat.Repair(lib, Debian12());
        Assert.Equal(CompatOutcome.Repaired, first.Outcome);
        Assert.Equal(new[] { "GLIBCXX_3.4.32" }, first.WeakenedVersions);
        Assert.Equal(new[] { "_ZSt21ios_base_library_initv@GLIBCXX_3.4.32" }, first.RepointedSymbols);

        var repaired = File.ReadAllBytes(lib);
        Assert.Equal(original.Length, repaired.Length);
        // Only the vernaux flags byte and the symbol's versym entry (1 or 2 bytes) change.
        var changed = Enumerable.Range(0, original.Length).Count(i => original[i] != repaired[i]);
        Assert.InRange(changed, 2, 3);

        var second = LibStdCxxCompat.Repair(lib, Debian12());
        Assert.Equal(CompatOutcome.AlreadyRepaired, second.Outcome);
        Assert.Equal(repaired, File.ReadAllBytes(lib));
        Assert.Empty(Directory.GetFiles(dir, "*.tmp"));
    }

    [Fact]
    public void ChangesNothingOnASystemWithANewEnoughLibStdCxx()
    {
        var original = File.ReadAllBytes(lib);
        var gcc13 = Debian12();
        gcc13.Add("GLIBCXX_3.4.31");
        gcc13.Add("GLIBCXX_3.4.32");
        Assert.Equal(CompatOutcome.NotNeeded, LibStdCxxCompat.Repair(lib, gcc13).Outcome);
        Assert.Equal(original, File.ReadAllBytes(lib));
    }

    [Fact]
    public void RefusesWhenAMissingVersionIsReallyUsedAndLeavesTheFileAlone()
    {
        // std::condition_variable::wait@GLIBCXX_3.4.30 is called through a relocation: weakening it would be a lie.
        var original = File.ReadAllBytes(lib);
        var tooOld = Debian12();
        tooOld.Remove("GLIBCXX_3.4.30");
        var e = Assert.Throws<InvalidOperationException>(() => LibStdCxxCompat.Repair(lib, tooOld));
        Assert.Contains("GLIBCXX_3.4.30", e.Message);
        Assert.Equal(original, File.ReadAllBytes(lib));
    }

    [Fact]
    public void ReadsTheVersionsTheSystemLibraryDefines()
    {
        var system = LibStdCxxCompat.FindSystemLibStdCxx();
        Assert.NotNull(system);
        var versions = LibStdCxxCompat.DefinedVersions(system!);
        Assert.Contains("GLIBCXX_3.4", versions);
        Assert.Contains("CXXABI_1.3", versions);
    }

    [Fact]
    public void RejectsAFileThatIsNotElf()
    {
        File.WriteAllText(lib, "not a shared library, just some text that is long enough to have a header........");
        Assert.Throws<InvalidDataException>(() => LibStdCxxCompat.Repair(lib, Debian12()));
    }
}
