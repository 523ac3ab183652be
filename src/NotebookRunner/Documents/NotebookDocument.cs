using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace LoraPS.NotebookRunner.Documents;

/// <summary>
/// A .NET polyglot notebook (nbformat 4) read into a JSON tree, so that everything the runner does not own (cell
/// ids, notebook metadata, attachments) is written back exactly as it was read. The runner only replaces each code
/// cell's <c>outputs</c> and <c>execution_count</c>.
/// </summary>
public sealed class NotebookDocument
{
    readonly JsonObject _root;

    NotebookDocument(JsonObject root, IReadOnlyList<NotebookCell> cells)
    {
        _root = root;
        Cells = cells;
    }

    public IReadOnlyList<NotebookCell> Cells { get; }

    /// <summary>The kernel of cells that name none: the notebook's polyglot default, else its kernelspec's language.</summary>
    public string DefaultKernel { get; private init; } = CellKernel.PowerShell;

    public static NotebookDocument Load(string path) => Parse(File.ReadAllText(path), path);

    /// <exception cref="FormatException">Not an nbformat 4 notebook; the message names the file and the problem.</exception>
    public static NotebookDocument Parse(string json, string source = "notebook")
    {
        JsonNode? node;
        try { node = JsonNode.Parse(json); }
        catch (JsonException e) { throw new FormatException($"{source} is not valid JSON: {e.Message}", e); }
        if (node is not JsonObject root) throw new FormatException($"{source}: a notebook is a JSON object.");
        if (root["nbformat"]?.GetValue<int>() is not 4)
            throw new FormatException($"{source}: only nbformat 4 notebooks are supported (found nbformat {root["nbformat"]?.ToJsonString() ?? "none"}).");
        if (root["cells"] is not JsonArray cells) throw new FormatException($"{source}: the notebook has no 'cells' array.");

        var parsed = new List<NotebookCell>();
        for (int i = 0; i < cells.Count; i++)
        {
            if (cells[i] is not JsonObject cell) throw new FormatException($"{source}: cell {i + 1} is not a JSON object.");
            parsed.Add(new NotebookCell(cell, i + 1));
        }
        return new NotebookDocument(root, parsed) { DefaultKernel = ReadDefaultKernel(root) };
    }

    static string ReadDefaultKernel(JsonObject root)
    {
        var metadata = root["metadata"] as JsonObject;
        if (metadata?["polyglot_notebook"]?["defaultKernelName"]?.GetValue<string>() is { Length: > 0 } name)
            return CellKernel.Normalize(name) ?? CellKernel.PowerShell;
        string? spec = metadata?["kernelspec"]?["name"]?.GetValue<string>();
        return spec switch
        {
            ".net-csharp" => CellKernel.CSharp,
            _ => CellKernel.PowerShell, // .net-powershell, the project's default (style.md point 9)
        };
    }

    /// <summary>The notebook as Jupyter writes it: one-space indentation, a final newline, non-ASCII kept as is.</summary>
    public string ToJson()
    {
        var options = new JsonWriterOptions
        {
            Indented = true,
            IndentSize = 1,
            Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
        };
        using var buffer = new MemoryStream();
        using (var writer = new Utf8JsonWriter(buffer, options)) _root.WriteTo(writer);
        return Encoding.UTF8.GetString(buffer.ToArray()) + "\n";
    }

    /// <summary>Writes atomically: a temporary file beside the target, then a rename.</summary>
    public void Save(string path)
    {
        string full = Path.GetFullPath(path);
        string temp = full + ".tmp";
        File.WriteAllText(temp, ToJson(), new UTF8Encoding(false));
        File.Move(temp, full, overwrite: true);
    }
}
