namespace LoraPS.Tests.Adapters;

/// <summary>Locates <c>tests/fixtures</c> by walking up from the test binaries to the folder holding LoraPS.sln.</summary>
internal static class AdapterTestFiles
{
    static readonly Lazy<string> Root = new(() =>
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "LoraPS.sln"))) return dir.FullName;
        }
        throw new DirectoryNotFoundException($"No LoraPS.sln above {AppContext.BaseDirectory}.");
    });

    public static string Fixture(params string[] parts) =>
        Path.Combine([Root.Value, "tests", "fixtures", .. parts]);

    public static string PeftAdapterDir(string variant) => Fixture("peft", variant, "adapter");
}
