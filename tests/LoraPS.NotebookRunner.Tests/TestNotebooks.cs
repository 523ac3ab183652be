using System.Text.Json.Nodes;

namespace LoraPS.NotebookRunner.Tests;

/// <summary>Builds small .NET polyglot notebooks for the tests.</summary>
public static class TestNotebooks
{
    public static string RepoRoot { get; } = FindRepoRoot();

    public static JsonObject Code(string source, string? kernel = null, string? legacyLanguage = null)
    {
        var metadata = new JsonObject();
        if (kernel is not null) metadata["polyglot_notebook"] = new JsonObject { ["kernelName"] = kernel };
        if (legacyLanguage is not null) metadata["dotnet_interactive"] = new JsonObject { ["language"] = legacyLanguage };
        return new JsonObject
        {
            ["cell_type"] = "code",
            ["execution_count"] = null,
            ["metadata"] = metadata,
            ["outputs"] = new JsonArray(),
            ["source"] = source,
        };
    }

    public static JsonObject Markdown(string source) =>
        new() { ["cell_type"] = "markdown", ["metadata"] = new JsonObject(), ["source"] = source };

    public static string Json(params JsonObject[] cells) => new JsonObject
    {
        ["cells"] = new JsonArray(cells.Select(c => (JsonNode)c).ToArray()),
        ["metadata"] = new JsonObject
        {
            ["kernelspec"] = new JsonObject { ["display_name"] = ".NET (PowerShell)", ["language"] = "PowerShell", ["name"] = ".net-powershell" },
        },
        ["nbformat"] = 4,
        ["nbformat_minor"] = 5,
    }.ToJsonString();

    /// <summary>Where <see cref="Write"/> puts notebooks: under out/, two levels below the module folder out/LoraPS.</summary>
    public static string Scratch { get; } = Path.Combine(RepoRoot, "out", "notebook-tests");

    /// <summary>Writes a notebook into a fresh folder under <see cref="Scratch"/>.</summary>
    public static string Write(string name, params JsonObject[] cells)
    {
        string folder = Path.Combine(Scratch, Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(folder);
        string path = Path.Combine(folder, name);
        File.WriteAllText(path, Json(cells));
        return path;
    }

    static string FindRepoRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "LoraPS.sln"))) return dir.FullName;
        throw new InvalidOperationException($"No LoraPS.sln above {AppContext.BaseDirectory}.");
    }
}
