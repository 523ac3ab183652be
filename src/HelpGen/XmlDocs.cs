using System.Reflection;
using System.Text;
using System.Text.RegularExpressions;
using System.Xml.Linq;

namespace LoraPS.HelpGen;

/// <summary>
/// The C# compiler's XML documentation files, looked up by member and turned into plain help text.
/// Convention (see the README in this folder): &lt;summary&gt; is the synopsis or parameter description,
/// &lt;remarks&gt; the long description, each &lt;example&gt; a title, a &lt;code&gt; and &lt;para&gt; remarks.
/// </summary>
public sealed class XmlDocs
{
    readonly Dictionary<string, XElement> _members = new(StringComparer.Ordinal);

    /// <summary>Maps a type full name to the text shown for a cref to it (cmdlet classes show as their cmdlet name).</summary>
    public Dictionary<string, string> CrefNames { get; } = new(StringComparer.Ordinal);

    public XmlDocs(IEnumerable<string> files)
    {
        foreach (var file in files)
            foreach (var member in XDocument.Load(file).Descendants("member"))
                if (member.Attribute("name")?.Value is { } name) _members[name] = member;
    }

    public XElement? Type(Type t) => Find("T:" + Id(t));
    public XElement? Property(PropertyInfo p) => Find($"P:{Id(p.DeclaringType!)}.{p.Name}");
    public XElement? Find(string id) => _members.GetValueOrDefault(id);

    /// <summary>Doc-comment ids write nested types with '.', not '+'.</summary>
    static string Id(Type t) => (t.FullName ?? t.Name).Replace('+', '.');

    /// <summary>The paragraphs of an element: &lt;para&gt; children become paragraphs, loose text one more.</summary>
    public List<string> Paragraphs(XElement? element)
    {
        var result = new List<string>();
        if (element is null) return result;
        var loose = new StringBuilder();
        foreach (var node in element.Nodes())
        {
            if (node is XElement { Name.LocalName: "para" or "code" or "list" } block)
            {
                Flush();
                if (block.Name.LocalName == "code") result.Add(Code(block));
                else if (block.Name.LocalName == "list") result.AddRange(block.Elements("item").Select(i => "- " + Inline(i)));
                else if (Inline(block) is { Length: > 0 } p) result.Add(p);
            }
            else loose.Append(InlineNode(node));
        }
        Flush();
        return result;

        void Flush()
        {
            var text = Normalize(loose.ToString());
            if (text.Length > 0) result.Add(text);
            loose.Clear();
        }
    }

    /// <summary>Inline text of an element with whitespace collapsed.</summary>
    public string Inline(XElement? element) =>
        element is null ? "" : Normalize(string.Concat(element.Nodes().Select(InlineNode)));

    /// <summary>
    /// The text of a &lt;code&gt; block: the compiler keeps the space after each "///", so strip the indentation
    /// common to all lines and the blank first and last lines.
    /// </summary>
    public static string Code(XElement code)
    {
        var lines = code.Value.Replace("\r\n", "\n").Split('\n').ToList();
        while (lines.Count > 0 && lines[0].Trim().Length == 0) lines.RemoveAt(0);
        while (lines.Count > 0 && lines[^1].Trim().Length == 0) lines.RemoveAt(lines.Count - 1);
        int indent = lines.Where(l => l.Trim().Length > 0).Select(l => l.Length - l.TrimStart().Length).DefaultIfEmpty(0).Min();
        return string.Join("\n", lines.Select(l => l.Length >= indent ? l[indent..].TrimEnd() : l.Trim()));
    }

    string InlineNode(XNode node) => node switch
    {
        XText text => text.Value,
        XElement { Name.LocalName: "see" or "seealso" } e when e.Attribute("langword") is { } word => word.Value,
        XElement { Name.LocalName: "see" or "seealso" } e when e.Attribute("cref") is { } cref => e.Value.Length > 0 ? e.Value : CrefText(cref.Value),
        XElement { Name.LocalName: "see" or "seealso" } e when e.Attribute("href") is { } href => e.Value.Length > 0 ? $"{e.Value} ({href.Value})" : href.Value,
        XElement { Name.LocalName: "paramref" or "typeparamref" } e => e.Attribute("name")?.Value ?? "",
        XElement { Name.LocalName: "br" } => "\n",
        XElement e => string.Concat(e.Nodes().Select(InlineNode)),
        _ => "",
    };

    /// <summary>"T:LoraPS.Module.Commands.GetLoraRuntimeCommand" → "Get-LoraRuntime"; "T:A.B.C" → "C";
    /// "P:A.B.C" → "B.C"; "M:A.B.C(System.Int32)" → "B.C".</summary>
    public string CrefText(string cref)
    {
        bool isType = !(cref.Length > 2 && cref[1] == ':') || cref[0] == 'T';
        string name = cref.Length > 2 && cref[1] == ':' ? cref[2..] : cref;
        int paren = name.IndexOf('(');
        if (paren >= 0) name = name[..paren];
        if (CrefNames.TryGetValue(name, out var mapped)) return mapped;
        name = System.Text.RegularExpressions.Regex.Replace(name, @"``?\d+", "");
        var parts = name.Split('.');
        return isType || parts.Length < 2 ? parts[^1] : $"{parts[^2]}.{parts[^1]}";
    }

    static string Normalize(string s) => Regex.Replace(s, @"[ \t\r\n]+", " ").Trim();
}
