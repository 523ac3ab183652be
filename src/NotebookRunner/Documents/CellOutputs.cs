using System.Text;
using System.Text.Json.Nodes;
using LoraPS.Notebooks;
using LoraPS.Runner.Hosting;

namespace LoraPS.NotebookRunner.Documents;

/// <summary>
/// The outputs of one cell as it runs, in nbformat 4 shape: consecutive text on one stream joins into one
/// <c>stream</c> output; an image ends the text before it, so text and plots keep their order.
/// </summary>
public sealed class CellOutputs
{
    readonly List<JsonObject> _outputs = [];
    readonly StringBuilder _pending = new();
    string? _pendingStream;
    readonly object _lock = new();

    /// <summary>Appends text to the stdout or stderr stream.</summary>
    public void Write(string stream, string text)
    {
        if (text.Length == 0) return;
        lock (_lock)
        {
            if (_pendingStream != stream) FlushText();
            _pendingStream = stream;
            _pending.Append(Terminal.StripAnsi(text));
        }
    }

    /// <summary>Adds what a cell displayed: a PNG display_data for a <see cref="NotebookImage"/>, else its text.</summary>
    public void Display(object? value)
    {
        switch (value)
        {
            case null: return;
            case NotebookImage image:
                lock (_lock)
                {
                    FlushText();
                    _outputs.Add(new JsonObject
                    {
                        ["data"] = new JsonObject
                        {
                            ["image/png"] = Convert.ToBase64String(image.Png),
                            ["text/plain"] = Lines(image.ToString()),
                        },
                        ["metadata"] = new JsonObject(),
                        ["output_type"] = "display_data",
                    });
                }
                return;
            default:
                string text = value.ToString() ?? "";
                Write("stdout", text.EndsWith('\n') ? text : text + "\n");
                return;
        }
    }

    /// <summary>Records the error that stopped the cell (after any text it wrote).</summary>
    public void Error(string name, string message, string details)
    {
        lock (_lock)
        {
            FlushText();
            _outputs.Add(new JsonObject
            {
                ["ename"] = name,
                ["evalue"] = message,
                ["output_type"] = "error",
                ["traceback"] = new JsonArray(Terminal.StripAnsi(details).Split('\n').Select(l => (JsonNode)JsonValue.Create(l)!).ToArray()),
            });
        }
    }

    /// <summary>The outputs in order (text still pending included).</summary>
    public IReadOnlyList<JsonObject> ToJson()
    {
        lock (_lock)
        {
            FlushText();
            return _outputs.ToList();
        }
    }

    /// <summary>All stream text so far, for console echo and error messages.</summary>
    public string Text(string? stream = null)
    {
        lock (_lock)
        {
            FlushText();
            return string.Concat(_outputs.Where(o => (string?)o["output_type"] == "stream" && (stream is null || (string?)o["name"] == stream))
                .SelectMany(o => o["text"]!.AsArray().Select(l => (string?)l)));
        }
    }

    void FlushText()
    {
        if (_pending.Length == 0 || _pendingStream is null) return;
        _outputs.Add(new JsonObject
        {
            ["name"] = _pendingStream,
            ["output_type"] = "stream",
            ["text"] = Lines(_pending.ToString()),
        });
        _pending.Clear();
    }

    /// <summary>nbformat's multiline strings: a list of lines, each keeping its "\n".</summary>
    static JsonArray Lines(string text)
    {
        var lines = new JsonArray();
        int start = 0;
        text = text.Replace("\r\n", "\n");
        while (start < text.Length)
        {
            int end = text.IndexOf('\n', start);
            int next = end < 0 ? text.Length : end + 1;
            lines.Add(JsonValue.Create(text[start..next]));
            start = next;
        }
        return lines;
    }
}

/// <summary>A text writer into whichever cell is running (the hosts and Console keep one writer for the whole run).</summary>
public sealed class CellStreamWriter(Func<CellOutputs?> current, string stream) : TextWriter
{
    public override Encoding Encoding => Encoding.UTF8;
    public override void Write(char value) => current()?.Write(stream, value.ToString());
    public override void Write(string? value) { if (value is not null) current()?.Write(stream, value); }
    public override void Write(char[] buffer, int index, int count) => current()?.Write(stream, new string(buffer, index, count));
    public override void WriteLine(string? value) => Write(value + "\n");
    public override void WriteLine() => Write("\n");
}
